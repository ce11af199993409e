//! The loadagent binary: parse the command line, build the runtime, run the command,
//! turn its error into an exit code.

use std::process::ExitCode;

use clap::Parser;
use loadagent::cli::Cli;

/// Raises the open-file soft limit to the hard limit: a handshake storm holds many sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The agent is a long-running daemon whose memory is mostly small, long-lived objects and
/// a few megabyte-sized expositions made and freed on other threads: with glibc's default of
/// an arena per thread (up to 8 per core) those frees fragment memory that is never given
/// back. One arena, and large blocks mapped on their own (returned to the system when
/// freed): 1,000 targets held 37 MiB of anonymous memory before and 26 MiB after
/// (benches/agent.sh). Not for `run`, whose generator threads allocate on their hot path.
fn tune_allocator_for_a_daemon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// How long after start the agent gives back its start-up code (`give_back_startup_code`):
/// by then its configuration is read, its protos compiled, its first probes sent and its
/// first scrapes served.
const STARTUP_OVER_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The agent's code pages that only its start-up ran stay in its RSS for as long as it
/// runs: the binary is mapped from disk, and the kernel maps 64 KB around every page first
/// run. Once start-up is over, a thread asks the kernel to reclaim the binary's read-only
/// mappings (`MADV_PAGEOUT`), marked for page-at-a-time reads first (`MADV_RANDOM`: no
/// read-ahead, so the fault-around maps no more than was read back); what the agent runs
/// from then on is read back on its first use. 10 targets, side by side with the build
/// before: 11.6 → 8.5 MiB RSS (file-backed 10.2 → 7.1; docs/benchmarks.md). Pages another
/// process maps too are left alone by the kernel; before Linux 5.4 the call does nothing.
fn give_back_startup_code() {
    #[cfg(target_os = "linux")]
    let _ = std::thread::Builder::new()
        .name("page-out".into())
        .spawn(|| {
            std::thread::sleep(STARTUP_OVER_AFTER);
            page_out_own_code();
        });
}

/// `MADV_PAGEOUT` over this binary's read-only mappings, found in /proc/self/maps.
#[cfg(target_os = "linux")]
fn page_out_own_code() {
    use std::io::Read;
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let mut maps = String::new();
    // The process's own mappings (a few hundred lines); bounded all the same.
    let read = std::fs::File::open("/proc/self/maps")
        .and_then(|f| f.take(4 << 20).read_to_string(&mut maps));
    if read.is_err() {
        return;
    }
    for (start, end) in read_only_ranges_of(&maps, &exe) {
        // SAFETY: MADV_PAGEOUT only asks the kernel to reclaim these pages; they are the
        // binary's read-only file pages, read back from it on their next use. No memory
        // is unmapped or changed.
        unsafe {
            let (addr, len) = (start as *mut libc::c_void, end - start);
            libc::madvise(addr, len, libc::MADV_RANDOM);
            libc::madvise(addr, len, libc::MADV_PAGEOUT);
        }
    }
}

/// The address ranges of `exe`'s read-only mappings in a `/proc/self/maps` text
/// (`start-end perms offset dev inode path` a line). A line it cannot read — cut short, a
/// path with spaces, an empty or reversed range — is skipped: nothing is paged out for it.
fn read_only_ranges_of<'m>(
    maps: &'m str,
    exe: &'m std::path::Path,
) -> impl Iterator<Item = (usize, usize)> + 'm {
    maps.lines().filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [range, perms, _, _, _, path] = fields[..] else {
            return None;
        };
        if perms.contains('w') || std::path::Path::new(path) != exe {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start < end).then_some((start, end))
    })
}

/// Set by the panic hook: some thread or task panicked.
static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The exit code of an internal error (a panic): EX_SOFTWARE, never 101.
const INTERNAL_ERROR: u8 = 70;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS; // --help, --version
            }
            // `probe` keeps grpc-health-probe's exit code for bad arguments (1); every other
            // command exits 2 on usage errors.
            let probe = std::env::args().nth(1).as_deref() == Some("probe");
            return ExitCode::from(if probe { 1 } else { 2 });
        }
    };
    raise_fd_limit();
    // A panic is a bug. It must not look like a user error (2) or go unnoticed: it is
    // reported as one and the process ends with 70 (EX_SOFTWARE), after the report of what
    // ran when the run could still finish. The agent catches its tasks' panics, counts
    // them and goes on, so for it only a panic of the agent itself ends the process.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        default_hook(info);
        eprintln!(
            "error: internal error (a bug in loadagent; please report it with the lines above)"
        );
    }));
    let agent = matches!(cli.command, loadagent::cli::Command::Agent { .. });
    if agent {
        tune_allocator_for_a_daemon();
        give_back_startup_code();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(loadagent::commands::execute(cli.command))
    }));
    // Do not wait for stray tasks (connection drivers) once the command is done.
    runtime.shutdown_background();
    let Ok(result) = result else {
        return ExitCode::from(INTERNAL_ERROR);
    };
    if !agent && PANICKED.load(std::sync::atomic::Ordering::SeqCst) {
        if let Err(e) = &result {
            eprintln!("error: {e}");
        }
        return ExitCode::from(INTERNAL_ERROR);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code.number())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_only_ranges_of;
    use std::path::Path;

    #[test]
    fn only_the_binarys_read_only_mappings_are_paged_out() {
        let maps = "\
55d0a0000000-55d0a0400000 r--p 00000000 08:01 1234 /usr/bin/loadagent
55d0a0400000-55d0a1000000 r-xp 00400000 08:01 1234 /usr/bin/loadagent
55d0a1000000-55d0a1100000 rw-p 01000000 08:01 1234 /usr/bin/loadagent
7f0000000000-7f0000200000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000400000 rw-p 00000000 00:00 0
7f0000500000-7f0000400000 r-xp 00000000 08:01 1234 /usr/bin/loadagent
zzzz-7f0000600000 r-xp 00000000 08:01 1234 /usr/bin/loadagent
7f0000600000-7f0000700000 r-xp 00000000 08:01 1234 /usr/bin/load agent
7f0000700000-7f00007
";
        let ranges: Vec<_> = read_only_ranges_of(maps, Path::new("/usr/bin/loadagent")).collect();
        assert_eq!(
            ranges,
            [
                (0x55d0_a000_0000, 0x55d0_a040_0000),
                (0x55d0_a040_0000, 0x55d0_a100_0000)
            ],
            "its r--p and r-xp mappings; not its data, another file, an anonymous mapping, a \
             reversed or unreadable range, another path or a line cut short"
        );
        assert_eq!(read_only_ranges_of("", Path::new("/x")).count(), 0);
    }
}
