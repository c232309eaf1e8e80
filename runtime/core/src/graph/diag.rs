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

    /// The errors in file order, with lines and columns counted in `text`.
    pub(crate) fn into_diagnostics(mut self, file: &str, text: &str) -> Diagnostics {
        self.errors.sort_by_key(|(offset, _)| *offset);
        Diagnostics(
            self.errors
                .into_iter()
                .map(|(offset, message)| {
                    let (line, col) = line_col(text, offset);
                    Diagnostic {
                        file: file.to_owned(),
                        line,
                        col,
                        message,
                    }
                })
                .collect(),
        )
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
