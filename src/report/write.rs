//! Writing output files. A regular file or a new path is written whole or not at all: into
//! a temporary file beside it, then renamed over it, so a reader never sees half a file.
//! Anything else that already exists is never replaced: a character device or a FIFO
//! (`/dev/null`, `/dev/stdout`, a named pipe) is written through, and `-` is standard
//! output; block devices, sockets and folders are refused. Replacing them would, as root,
//! swap the system's `/dev/null` for a regular file.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Where an output path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`.
    Stdout,
    /// A regular file (the file a symbolic link leads to) or a new path: replaced whole.
    Replace(PathBuf),
    /// An existing character device or FIFO: written through, never replaced.
    WriteThrough(PathBuf),
}

fn refused(path: &Path, why: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}

/// Where writing `path` goes, or why it cannot go anywhere.
pub fn destination(path: &Path) -> std::io::Result<Destination> {
    if path.as_os_str() == "-" {
        return Ok(Destination::Stdout);
    }
    let link = std::fs::symlink_metadata(path);
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            // Through a symbolic link, the file it leads to is replaced, not the link.
            let real = if link.is_ok_and(|l| l.file_type().is_symlink()) {
                std::fs::canonicalize(path)?
            } else {
                path.to_path_buf()
            };
            Ok(Destination::Replace(real))
        }
        Ok(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_fifo() {
                Ok(Destination::WriteThrough(path.to_path_buf()))
            } else if t.is_dir() {
                Err(refused(path, "is a folder; give a file name".into()))
            } else if t.is_block_device() {
                Err(refused(
                    path,
                    "is a block device; a report is never written onto a disk".into(),
                ))
            } else {
                Err(refused(
                    path,
                    "is a socket; give a file name, a FIFO or `-`".into(),
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if link.is_ok() {
                return Err(refused(
                    path,
                    "is a symbolic link to a path that does not exist; remove it or give another path"
                        .into(),
                ));
            }
            Ok(Destination::Replace(path.to_path_buf()))
        }
        Err(e) => Err(e),
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Proves, before any work, that `path` can be written: a file is created beside it and
/// removed again (a read-only file system, a folder the user cannot write, `/proc` all fail
/// here), and a device or FIFO is opened for writing.
pub fn prove_writable(path: &Path) -> std::io::Result<()> {
    match destination(path)? {
        Destination::Stdout => Ok(()),
        Destination::Replace(real) => {
            let dir = folder_of(&real);
            if !dir.is_dir() {
                return Err(refused(
                    path,
                    format!(
                        "the folder {} does not exist; create it or choose another path",
                        dir.display()
                    ),
                ));
            }
            tempfile::Builder::new()
                .prefix(".loadagent-check-")
                .tempfile_in(dir)
                .map(drop)
                .map_err(|e| refused(path, format!("cannot write in {}: {e}", dir.display())))
        }
        // Checked, not opened: opening a FIFO and closing it again would hand its reader
        // an end of file before the report.
        Destination::WriteThrough(p) => nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK)
            .map_err(|e| refused(path, format!("cannot write to it: {e}"))),
    }
}

/// Writes `bytes` to `path` as [`destination`] says.
pub fn write_output(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match destination(path)? {
        Destination::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        Destination::Replace(real) => {
            let folder = folder_of(&real);
            let prefix = temporary_prefix(&real);
            remove_stale(folder, &prefix);
            let mut tmp = tempfile::Builder::new()
                .prefix(&format!("{prefix}{}-", std::process::id()))
                .suffix(".tmp")
                .tempfile_in(folder)?;
            tmp.write_all(bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&real).map_err(|e| e.error)?;
            Ok(())
        }
        Destination::WriteThrough(p) => {
            let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.write_all(bytes)?;
            f.flush()
        }
    }
}

/// How our temporaries beside `real` begin: they say whose they are (".report.json.loadagent-"
/// then the writer's pid), so one left by a killed writer is known and removed.
fn temporary_prefix(real: &Path) -> String {
    let name = real
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.loadagent-")
}

/// Removes the temporaries of `prefix` in `folder` whose writer is gone (killed between
/// writing and renaming): ours by name, and no process has their pid now.
fn remove_stale(folder: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten().take(100_000) {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if !rest.ends_with(".tmp") {
            continue;
        }
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH);
        if gone && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to a new file in the temporary folder when `path` could not be written,
/// so the output of a long run is not lost; returns where it went.
pub fn write_fallback(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("loadagent-{}-", std::process::id()))
        .suffix(&format!("-{name}"))
        .tempfile_in(std::env::temp_dir())?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let (_, kept) = tmp.keep().map_err(|e| e.error)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_and_new_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_output(&p, b"one").unwrap();
        write_output(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }

    /// A temporary left by a writer killed before its rename is ours by name and removed at
    /// the next write; a live writer's, and files that are not ours, stay.
    #[test]
    fn stale_temporaries_of_ours_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".r.json.loadagent-{dead}-x1.tmp"));
        let live = dir
            .path()
            .join(format!(".r.json.loadagent-{}-x2.tmp", std::process::id()));
        let other = dir.path().join(".r.json.someone-else.tmp");
        for f in [&stale, &live, &other] {
            std::fs::write(f, "half").unwrap();
        }
        write_output(&p, b"whole").unwrap();
        assert!(!stale.exists() && live.exists() && other.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "no temporary of this write is left");
    }

    #[test]
    fn a_symlink_to_a_file_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_output(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn devices_are_written_through_not_replaced() {
        assert_eq!(
            destination(Path::new("/dev/null")).unwrap(),
            Destination::WriteThrough("/dev/null".into())
        );
        write_output(Path::new("/dev/null"), b"x").unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        write_output(&link, b"x").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn folders_dangling_links_and_unwritable_places_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(prove_writable(dir.path()).is_err());
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(prove_writable(&dangling).is_err());
        assert!(prove_writable(Path::new("/proc/r.json")).is_err());
        assert!(prove_writable(&dir.path().join("no/such/folder.json")).is_err());
        assert!(prove_writable(&dir.path().join("fine.json")).is_ok());
        assert!(prove_writable(Path::new("-")).is_ok());
    }

    #[test]
    fn the_fallback_keeps_the_bytes() {
        let kept = write_fallback(Path::new("/proc/r.json"), b"report").unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), b"report");
        assert!(kept.to_string_lossy().ends_with("-r.json"));
        std::fs::remove_file(kept).unwrap();
    }
}
