//! Plain-text tables for the command line, lined up as a terminal shows them: a column is as
//! wide as its widest cell in terminal columns (an id like `設計` takes four, where `{:<w$}`
//! would count two characters), two spaces apart, the last column not padded.

use unicode_width::UnicodeWidthStr;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers.
    Right,
}

/// The header's line, then one line per row.
pub fn lines<const N: usize>(
    header: [&str; N],
    align: [Align; N],
    rows: &[[String; N]],
) -> Vec<String> {
    let mut widths = header.map(UnicodeWidthStr::width);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let line = |cells: [&str; N]| {
        let mut line = String::new();
        for (at, cell) in cells.into_iter().enumerate() {
            if at + 1 == N {
                line.push_str(cell);
            } else {
                let cell = match align[at] {
                    Align::Left => pad(cell, widths[at]),
                    Align::Right => pad_left(cell, widths[at]),
                };
                line.push_str(&cell);
                line.push_str("  ");
            }
        }
        line.trim_end().to_owned()
    };
    std::iter::once(line(header))
        .chain(rows.iter().map(|row| line(std::array::from_fn(|at| row[at].as_str()))))
        .collect()
}

/// `text` and spaces to `width` terminal columns.
pub fn pad(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(text.width())))
}

/// Spaces and `text` to `width` terminal columns.
fn pad_left(text: &str, width: usize) -> String {
    format!("{}{text}", " ".repeat(width.saturating_sub(text.width())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_as_a_terminal_shows_them() {
        let rows = [
            ["設計".to_owned(), "1".to_owned(), "wide".to_owned()],
            ["build-api".to_owned(), "12".to_owned(), "last, unpadded".to_owned()],
        ];
        let lines = lines(["TASK", "N", "NOTE"], [Align::Left, Align::Right, Align::Left], &rows);
        assert_eq!(
            lines,
            ["TASK        N  NOTE", "設計        1  wide", "build-api  12  last, unpadded",]
        );
        let widths: Vec<usize> =
            lines.iter().map(|l| l[..l.find("  ").unwrap_or(0)].width()).collect();
        assert!(widths.iter().all(|w| *w <= 9), "{lines:#?}");
    }
}
