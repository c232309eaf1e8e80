//! Diagnostics: every error of a graph file, each at a line and column.

use std::fmt;
use std::ops::Range;

/// One error in a graph file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's display name, as given to [`super::load`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong and, where the user can act, what would be valid.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every error found in a graph file, in file order. Displayed one per line
/// as `FILE:LINE:COL: error: message`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The diagnostics, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no error (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Errors collected during loading, at byte offsets into the text.
#[derive(Debug, Default)]
pub(crate) struct Report {
    errors: Vec<(usize, String)>,
}

impl Report {
    /// An error at the start of `span`.
    /// Control characters (from quoted keys or values) are escaped so that
    /// each diagnostic stays on one line and cannot drive a terminal.
    pub(crate) fn at(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let mut message: String = message.into();
        if message.chars().any(char::is_control) {
            message = message
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
        }
        self.errors.push((span.start, message));
    }

    /// True when nothing was reported.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors so far.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors in file order, with lines and columns counted in `text`
    /// in one pass (a file may hold a hundred thousand errors).
    pub(crate) fn into_diagnostics(mut self, file: &str, text: &str) -> Diagnostics {
        self.errors.sort_by_key(|(offset, _)| *offset);
        let mut at = Position::default();
        Diagnostics(
            self.errors
                .into_iter()
                .map(|(offset, message)| {
                    at.advance(text, offset);
                    Diagnostic {
                        file: file.to_owned(),
                        line: at.line,
                        col: at.col,
                        message,
                    }
                })
                .collect(),
        )
    }
}

/// A place in a text, moved forward from one error's offset to the next.
struct Position {
    offset: usize,
    line: usize,
    col: usize,
}

impl Default for Position {
    fn default() -> Position {
        Position {
            offset: 0,
            line: 1,
            col: 1,
        }
    }
}

impl Position {
    /// Moves to `offset` (clamped to the text and to a character boundary;
    /// never backwards).
    fn advance(&mut self, text: &str, offset: usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let Some(between) = text.get(self.offset..offset) else {
            return;
        };
        match between.rfind('\n') {
            Some(last) => {
                self.line += between.matches('\n').count();
                self.col = between.get(last + 1..).unwrap_or("").chars().count() + 1;
            }
            None => self.col += between.chars().count(),
        }
        self.offset = offset;
    }
}

/// 1-based line and column (in characters) of a byte offset, clamped to the text.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_placed_in_one_pass_as_each_alone_would_be() {
        let text = "a = 1\nβγ = 2\n\nlast = \"é\" x";
        let offsets = [0, 3, 6, 8, 10, 14, 15, 21, 24, text.len() + 5];
        let mut report = Report::default();
        // Out of order, and two at one place.
        for &o in offsets.iter().rev() {
            report.at(&(o..o + 1), format!("at {o}"));
        }
        report.at(&(8..9), "at 8 again");
        let placed = report.into_diagnostics("f", text);
        assert_eq!(placed.len(), offsets.len() + 1);
        for d in placed.iter() {
            let o: usize = d
                .message
                .split(' ')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("each message names its offset");
            assert_eq!((d.line, d.col), line_col(text, o), "{}", d.message);
        }
    }

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        let text = "ab\nc\u{e9}d\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 6), (2, 3));
        assert_eq!(line_col(text, 5), (2, 2)); // inside `é`: its start
        assert_eq!(line_col(text, 99), (3, 1));
    }

    #[test]
    fn control_characters_in_messages_are_escaped() {
        let mut r = Report::default();
        r.at(&(0..1), "id `a\nb\u{1b}[31m`");
        let d = r.into_diagnostics("g.toml", "x");
        assert_eq!(d.to_string(), "g.toml:1:1: error: id `a\\nb\\u{1b}[31m`");
    }

    #[test]
    fn diagnostics_print_one_per_line() {
        let mut r = Report::default();
        r.at(&(3..4), "second");
        r.at(&(0..1), "first");
        let d = r.into_diagnostics("g.toml", "ab\ncd");
        assert_eq!(
            d.to_string(),
            "g.toml:1:1: error: first\ng.toml:2:1: error: second"
        );
    }
}
