//! Reading the files a user names: regular files only, never more than a cap per kind of
//! file, and text that is not UTF-8 is pointed at by line and column.
//!
//! Why: a path in a scenario or config can name anything (`/dev/zero`, a FIFO, a 50 GB log);
//! reading it whole would hang the process or exhaust its memory. The caps are far above any
//! real file of that kind and are listed in docs/scenarios.md, "Limits".

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file is for, which sets its size cap and how errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A scenario file.
    Scenario,
    /// The agent's config.
    AgentConfig,
    /// A saved report.
    Report,
    /// A .proto file.
    Proto,
    /// A protoset (a serialized FileDescriptorSet).
    Protoset,
    /// A `data_file` of requests.
    DataFile,
    /// A PEM certificate or key.
    Pem,
    /// A pid file.
    PidFile,
    /// A `--web.config.file`.
    WebConfig,
    /// A file holding a secret: a bearer token, a password.
    Secret,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

impl FileKind {
    /// The largest file of this kind that is read.
    pub fn cap(self) -> u64 {
        match self {
            Self::Scenario | Self::AgentConfig | Self::WebConfig => 16 * MIB,
            Self::Report => 256 * MIB,
            Self::Proto => 16 * MIB,
            Self::Protoset => 64 * MIB,
            Self::DataFile => 256 * MIB,
            Self::Pem => MIB,
            Self::PidFile => 4 * KIB,
            Self::Secret => 64 * KIB,
        }
    }

    /// The noun with its article: "a scenario", "an agent config".
    pub fn with_article(self) -> String {
        let noun = self.noun();
        let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {noun}")
    }

    /// What the file is called in messages ("scenario", "agent config", …).
    pub fn noun(self) -> &'static str {
        match self {
            Self::Scenario => "scenario",
            Self::AgentConfig => "agent config",
            Self::Report => "report",
            Self::Proto => "proto file",
            Self::Protoset => "protoset",
            Self::DataFile => "data file",
            Self::Pem => "PEM file",
            Self::PidFile => "pid file",
            Self::WebConfig => "web config",
            Self::Secret => "secret file",
        }
    }
}

/// Why an input file was not read. Its text names the file and how to fix it.
#[derive(Debug)]
pub enum InputError {
    /// The file could not be opened or read.
    Io(PathBuf, FileKind, std::io::Error),
    /// Not a regular file (a device, a folder, a FIFO): what it is.
    NotRegular(PathBuf, FileKind, &'static str),
    /// Larger than its kind's cap.
    TooLarge(PathBuf, FileKind),
    /// Not UTF-8, at this line and column.
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// What it is for.
        kind: FileKind,
        /// The line of the first byte that is not UTF-8.
        line: usize,
        /// Its column.
        column: usize,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(p, k, e) => write!(f, "cannot read the {} {}: {e}", k.noun(), p.display()),
            Self::NotRegular(p, k, what) => write!(
                f,
                "{} is {what}, not a regular file; give the path of {}",
                p.display(),
                k.with_article()
            ),
            Self::TooLarge(p, k) => write!(
                f,
                "{} is larger than {} MiB, the most a {} may be",
                p.display(),
                k.cap() as f64 / MIB as f64,
                k.noun()
            ),
            Self::NotUtf8 {
                path,
                kind,
                line,
                column,
            } => write!(
                f,
                "{}:{line}:{column}: the {} is not UTF-8 text from here on; save it as UTF-8",
                path.display(),
                kind.noun()
            ),
        }
    }
}

impl std::error::Error for InputError {}

fn file_type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads a whole regular file of `kind`, at most its cap. Symbolic links are followed; what
/// they lead to must be a regular file too.
pub fn read_bytes(path: &Path, kind: FileKind) -> Result<Vec<u8>, InputError> {
    let io = |e| InputError::Io(path.to_path_buf(), kind, e);
    // Opened first, then checked: the type that is checked is the type that is read.
    // O_NONBLOCK keeps opening a FIFO without a writer from blocking.
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular(
            path.to_path_buf(),
            kind,
            file_type_name(meta.file_type()),
        ));
    }
    let cap = kind.cap();
    if meta.len() > cap {
        return Err(InputError::TooLarge(path.to_path_buf(), kind));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The size can change while it is read: never take more than the cap.
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(InputError::TooLarge(path.to_path_buf(), kind));
    }
    Ok(bytes)
}

/// Reads a regular file of `kind` as UTF-8 text; bytes that are not UTF-8 are named by line
/// and column.
pub fn read_text(path: &Path, kind: FileKind) -> Result<String, InputError> {
    let bytes = read_bytes(path, kind)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let (line, column) = line_column(std::str::from_utf8(valid).unwrap_or_default());
        InputError::NotUtf8 {
            path: path.to_path_buf(),
            kind,
            line,
            column,
        }
    })
}

/// The 1-based line and column just after `before`.
fn line_column(before: &str) -> (usize, usize) {
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "name = \"x\"\n").unwrap();
        assert_eq!(read_text(&p, FileKind::Scenario).unwrap(), "name = \"x\"\n");
    }

    #[test]
    fn refuses_devices_folders_and_fifos() {
        let e = read_bytes(Path::new("/dev/zero"), FileKind::Pem).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        // Each kind named once, with its article: no "a agent config", no "data file file".
        for (kind, says) in [
            (FileKind::AgentConfig, "give the path of an agent config"),
            (FileKind::DataFile, "give the path of a data file"),
            (FileKind::Proto, "give the path of a proto file"),
        ] {
            let e = read_bytes(Path::new("/dev/zero"), kind)
                .unwrap_err()
                .to_string();
            assert!(e.ends_with(says), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e = read_bytes(dir.path(), FileKind::Scenario).unwrap_err();
        assert!(
            matches!(e, InputError::NotRegular(..) | InputError::Io(..)),
            "{e}"
        );
        let fifo = dir.path().join("f");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_bytes(&fifo, FileKind::Scenario).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn refuses_files_over_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.pid");
        std::fs::write(&p, vec![b'1'; FileKind::PidFile.cap() as usize + 1]).unwrap();
        let e = read_bytes(&p, FileKind::PidFile).unwrap_err();
        assert!(matches!(e, InputError::TooLarge(..)), "{e}");
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn names_the_line_and_column_of_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, b"a = 1\nname = \"\xc3\xa9\xff\"\n").unwrap();
        let e = read_text(&p, FileKind::Scenario).unwrap_err();
        assert!(e.to_string().contains("bad.toml:2:10:"), "{e}");
    }
}
