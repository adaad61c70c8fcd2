//! The fuzz corpus on stable Rust: every committed input of `fuzz/corpus/<target>/`, and a few
//! hundred deterministic mutations of each (truncations, byte flips, splices, repeats),
//! through the same `flightdeck::fuzzing` functions the `cargo fuzz` targets call. Any panic
//! fails the test and names the target, the file and the mutation.
//!
//! `cargo fuzz` itself needs nightly and cargo-fuzz, which CI does not have offline; this
//! keeps the targets and their corpus exercised on every `cargo test`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use flightdeck::fuzzing::TARGETS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MUTATIONS_PER_INPUT: usize = 60;

fn mutate(seed: &[u8], rng: &mut StdRng, round: usize) -> Vec<u8> {
    let mut data = seed.to_vec();
    match round % 5 {
        0 if !data.is_empty() => data.truncate(rng.random_range(0..data.len())),
        1 if !data.is_empty() => {
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..data.len());
                data[at] ^= 1 << rng.random_range(0..8);
            }
        }
        2 if !data.is_empty() => {
            let at = rng.random_range(0..data.len());
            let interesting: &[&[u8]] = &[
                b"\0",
                b"\xff",
                b"\n---\n",
                b"&a",
                b"*a",
                b"[[[[",
                b"\x1b[2J",
                b"\r\n",
                b"18446744073709551615s",
            ];
            let piece = interesting[rng.random_range(0..interesting.len())];
            data.splice(at..at, piece.iter().copied());
        }
        3 if !data.is_empty() => {
            let from = rng.random_range(0..data.len());
            let to = rng.random_range(from..=data.len());
            let copy = data[from..to].to_vec();
            for _ in 0..rng.random_range(1..4) {
                data.extend_from_slice(&copy);
            }
        }
        _ => data.reverse(),
    }
    data
}

#[test]
fn every_corpus_input_and_its_mutations_parse_without_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut fed = 0;
    for (name, target) in TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name} in {}", dir.display());
        for file in files {
            let seed = std::fs::read(&file).unwrap();
            let mut rng = StdRng::seed_from_u64(fed as u64);
            let inputs = std::iter::once(seed.clone())
                .chain((0..MUTATIONS_PER_INPUT).map(|round| mutate(&seed, &mut rng, round)));
            for (round, input) in inputs.enumerate() {
                let result = std::panic::catch_unwind(|| target(&input));
                assert!(
                    result.is_ok(),
                    "{name} panicked on {} (mutation {round}, {} bytes)",
                    file.display(),
                    input.len()
                );
                fed += 1;
            }
        }
    }
    assert!(fed > 1000, "only {fed} inputs fed");
}
