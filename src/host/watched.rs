//! Which processes a watched entry names — the one whose pid a pid file holds, or every
//! process of a name — for a scenario's `[target] process` and the agent's `processes`: one
//! way to read a pid file (bounded, like every file a user names) and to look up a name.

use super::procfs::{self, Proc};

pub use crate::vocabulary::watch::is_pid_file;

/// The pids `entry` names on this node, by pid order; an error says why there are none.
/// `system` has its process list refreshed by the caller (the agent keeps one).
pub fn pids(system: &sysinfo::System, entry: &str) -> Result<Vec<u32>, String> {
    if is_pid_file(entry) {
        return from_pid_file(entry).map(|pid| vec![pid]);
    }
    let me = std::process::id();
    let mut pids: Vec<u32> = system
        .processes()
        .iter()
        .filter(|(pid, p)| p.name() == entry && pid.as_u32() != me)
        .map(|(pid, _)| pid.as_u32())
        .collect();
    pids.sort_unstable();
    if pids.is_empty() {
        return Err(format!(
            "no process named `{entry}` runs on this node (the name as in /proc/PID/comm, or a pid file path)"
        ));
    }
    Ok(pids)
}

/// The pid in a pid file, running on this node.
fn from_pid_file(path: &str) -> Result<u32, String> {
    let text = crate::input::read_text(path.as_ref(), crate::input::FileKind::PidFile)
        .map_err(|e| e.to_string())?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("the pid file {path} does not hold a pid: `{}`", text.trim()))?;
    if !procfs::exists(Proc::Pid(pid)) {
        return Err(format!("pid {pid} from {path} is not running on this node"));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_names_its_process_and_a_bad_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.pid");
        let system = sysinfo::System::new();
        let entry = file.to_str().unwrap();
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(pids(&system, entry), Ok(vec![std::process::id()]));
        std::fs::write(&file, "not a pid").unwrap();
        assert!(pids(&system, entry)
            .unwrap_err()
            .contains("does not hold a pid"));
        std::fs::write(&file, "4194304999").unwrap();
        assert!(pids(&system, entry).is_err());
        // A name: never this process, though it is running under it.
        let mut all = sysinfo::System::new();
        all.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
        let me = all
            .process(sysinfo::Pid::from_u32(std::process::id()))
            .map(|p| p.name().to_string_lossy().into_owned())
            .unwrap();
        assert!(pids(&all, &me).map_or(true, |p| !p.contains(&std::process::id())));
    }
}
