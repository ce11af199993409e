//! Problems found in an input file, each pointing at a line, a column and a key.

use std::fmt;
use std::path::PathBuf;

use super::source::Loc;

/// One thing wrong with an input file, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file.
    pub loc: Loc,
    /// The dotted key the problem is about (`load.rate`), or empty for the whole file.
    pub key: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

/// Every problem found in one file. Validation collects them all before failing, so a user
/// fixes a file in one pass instead of one error per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// Every problem, in the order of the file.
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.list.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            write!(
                f,
                "  {}:{}:{}: ",
                self.path.display(),
                p.loc.line,
                p.loc.column
            )?;
            if !p.key.is_empty() {
                write!(f, "`{}`: ", p.key)?;
            }
            writeln!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
