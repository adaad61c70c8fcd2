//! A bounded list of lines that is cheap to copy: the audit pane's lines.
//!
//! A replay keeps copies of the whole console state to step back from; the audit pane holds
//! up to 10,000 lines, and copying them was a good part of each copy's time and memory. Here
//! the lines live in chunks behind `Arc`: a copy shares every chunk, and a chunk is copied
//! only when a line in it changes (the newest chunk, as lines arrive). Lines leave from the
//! front a chunk at a time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// Lines per chunk: a copy of the list costs one pointer per chunk; a change after a copy
/// costs one chunk.
const CHUNK: usize = 256;

/// A double-ended list of lines, added at the back and dropped from the front.
#[derive(Clone)]
pub struct SharedRing<T> {
    /// Every chunk but the last is full.
    chunks: VecDeque<Arc<Vec<T>>>,
    /// Lines of the first chunk already dropped.
    head: usize,
    len: usize,
}

impl<T> Default for SharedRing<T> {
    fn default() -> Self {
        Self { chunks: VecDeque::new(), head: 0, len: 0 }
    }
}

impl<T: Clone> SharedRing<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where line `index` is: its chunk and its place there.
    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        (index < self.len).then(|| {
            let at = self.head + index;
            (at / CHUNK, at % CHUNK)
        })
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        let (chunk, at) = self.locate(index)?;
        self.chunks.get(chunk)?.get(at)
    }

    /// The line at `index`, for changing it (its chunk is copied if a copy shares it).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let (chunk, at) = self.locate(index)?;
        Arc::make_mut(self.chunks.get_mut(chunk)?).get_mut(at)
    }

    pub fn front(&self) -> Option<&T> {
        self.get(0)
    }

    pub fn back(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    pub fn push_back(&mut self, line: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(line),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(line);
                self.chunks.push_back(Arc::new(chunk));
            }
        }
        self.len += 1;
    }

    /// Drop the oldest line; returns whether there was one. Its memory goes with its chunk.
    pub fn pop_front(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.len -= 1;
        self.head += 1;
        if self.head == CHUNK || self.len == 0 {
            self.chunks.pop_front();
            self.head = 0;
        }
        true
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        // The chunks hold exactly the kept lines once the first one's dropped part is cut.
        self.chunks.iter().enumerate().flat_map(|(k, chunk)| {
            let from = if k == 0 { self.head } else { 0 };
            chunk.get(from..).unwrap_or_default().iter()
        })
    }
}

impl<T: Clone> std::ops::Index<usize> for SharedRing<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(line) => line,
            None => panic!("line {index} out of a ring of {}", self.len),
        }
    }
}

impl<T: Clone + PartialEq> PartialEq for SharedRing<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Clone + fmt::Debug> fmt::Debug for SharedRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// The ring against a `VecDeque` doing the same, as the audit pane uses it: push, keep
    /// at most `keep`, change lines, copy.
    #[test]
    fn behaves_as_a_bounded_deque_and_copies_share_nothing_visible() {
        for keep in [1, 5, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let mut ring = SharedRing::new();
            let mut deque = VecDeque::new();
            let mut copies = Vec::new();
            for i in 0..(4 * CHUNK + 13) {
                ring.push_back(i);
                deque.push_back(i);
                if ring.len() > keep {
                    assert!(ring.pop_front());
                    deque.pop_front();
                }
                if i % 7 == 0 {
                    let last = ring.len() - 1;
                    *ring.get_mut(last / 2).expect("kept") += 1_000_000;
                    deque[last / 2] += 1_000_000;
                }
                if i % 97 == 0 {
                    copies.push((ring.clone(), deque.clone()));
                }
                assert_eq!(ring.len(), deque.len());
                assert_eq!(ring.front(), deque.front());
                assert_eq!(ring.back(), deque.back());
                assert_eq!(ring[ring.len() - 1], deque[deque.len() - 1]);
            }
            assert!(ring.iter().eq(deque.iter()), "keep {keep}");
            assert!(ring.iter().rev().eq(deque.iter().rev()), "keep {keep}");
            assert_eq!(ring.get(ring.len()), None);
            // Copies taken on the way still hold what was there then.
            for (copy, then) in copies {
                assert!(copy.iter().eq(then.iter()), "keep {keep}");
            }
        }
    }

    #[test]
    fn emptied_and_filled_again() {
        let mut ring = SharedRing::new();
        for i in 0..3 {
            ring.push_back(i);
        }
        while ring.pop_front() {}
        assert!(ring.is_empty());
        assert_eq!(ring.front(), None);
        ring.push_back(9);
        assert_eq!((ring.len(), ring.front(), ring.back()), (1, Some(&9), Some(&9)));
        assert_eq!(ring, {
            let mut other = SharedRing::new();
            other.push_back(9);
            other
        });
    }
}
