//! A scenario file's text, kept so problems can be pointed at by line and column.

use std::path::{Path, PathBuf};

/// A position in a source file, 1-based, as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Loc {
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
}

/// The text of one input file and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Byte offsets where each line starts, and of every UTF-8 continuation byte: a
    /// location is two binary searches, so reading a file is linear in its size (rescanning
    /// the text for each value made a 1 MB config take half a minute).
    line_starts: Vec<usize>,
    continuation_bytes: Vec<usize>,
}

impl Source {
    /// The text of `path`.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        let mut continuation_bytes = Vec::new();
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            } else if b & 0xC0 == 0x80 {
                continuation_bytes.push(i);
            }
        }
        Self {
            path: path.into(),
            text,
            line_starts,
            continuation_bytes,
        }
    }

    /// The line and column (counted in characters) of a byte offset.
    pub fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let line_start = self.line_starts[line - 1];
        let continuations = self.continuation_bytes.partition_point(|&c| c < offset)
            - self.continuation_bytes.partition_point(|&c| c < line_start);
        let column = offset - line_start - continuations + 1;
        Loc { line, column }
    }

    /// Resolves a path written in the file: relative paths are relative to the file's folder,
    /// so a scenario works whatever the current directory is.
    pub fn resolve(&self, written: &str) -> PathBuf {
        let p = Path::new(written);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_counts_lines_and_columns_from_one() {
        let s = Source::new("x.toml", "a = 1\nbb = 2\n");
        assert_eq!(s.loc(0), Loc { line: 1, column: 1 });
        assert_eq!(s.loc(6), Loc { line: 2, column: 1 });
        assert_eq!(s.loc(11), Loc { line: 2, column: 6 });
    }

    #[test]
    fn loc_counts_characters_not_bytes() {
        let text = "a = \"é€\"\nb = \"ü\" # x\n";
        let s = Source::new("x.toml", text);
        // Every offset agrees with counting characters from the start.
        for (offset, _) in text.char_indices() {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(s.loc(offset), Loc { line, column }, "offset {offset}");
        }
        assert_eq!(s.loc(usize::MAX), Loc { line: 3, column: 1 });
    }

    #[test]
    fn relative_paths_resolve_beside_the_file() {
        let s = Source::new("scenarios/a.toml", "");
        assert_eq!(s.resolve("p/x.proto"), PathBuf::from("scenarios/p/x.proto"));
        assert_eq!(s.resolve("/abs/x.proto"), PathBuf::from("/abs/x.proto"));
        let bare = Source::new("a.toml", "");
        assert_eq!(bare.resolve("x.proto"), PathBuf::from("x.proto"));
    }
}

/// A value read together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub loc: Loc,
}
