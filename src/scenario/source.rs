//! A scenario file's text, kept so problems can be pointed at by line and column.

use std::path::{Path, PathBuf};

/// A position in a source file, 1-based, as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// The text of one input file and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The line and column (counted in characters) of a byte offset.
    pub fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
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
    fn relative_paths_resolve_beside_the_file() {
        let s = Source::new("scenarios/a.toml", "");
        assert_eq!(s.resolve("p/x.proto"), PathBuf::from("scenarios/p/x.proto"));
        assert_eq!(s.resolve("/abs/x.proto"), PathBuf::from("/abs/x.proto"));
        let bare = Source::new("a.toml", "");
        assert_eq!(bare.resolve("x.proto"), PathBuf::from("x.proto"));
    }
}
