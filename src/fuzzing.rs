//! A fuzz loop that runs on the stable toolchain, for the readers of untrusted input (scenario
//! and config files, reports, histograms, HPACK, HTTP/2 frames, exposition text).
//!
//! Why not cargo-fuzz: its sanitizers and libFuzzer need nightly, and only stable exists
//! here. This loop is mutation-based (no coverage feedback): it replays every case kept in
//! `tests/fuzz/regressions/<target>/`, then mutates the target's seeds (valid inputs) with
//! stacked byte-level and dictionary mutations until its time budget is spent. A panic, or
//! one input taking longer than [`SLOW_CASE`], fails the test; the input is written to
//! `target/fuzz-found/<target>/` to be copied into the regressions folder, where it stays.
//!
//! `LOADAGENT_FUZZ_SECONDS` sets each target's budget (default 5), `LOADAGENT_FUZZ_SEED`
//! replays one run.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs are at most this long: enough for every structure, small enough to be fast.
pub const MAX_INPUT: usize = 64 * 1024;
/// One input taking longer than this is a finding (something quadratic, or a hang).
pub const SLOW_CASE: Duration = Duration::from_secs(3);

/// One fuzz target: its name (the regressions folder), seeds, tokens worth inserting, and
/// the check, which must return (not panic, not hang) for every input.
pub struct Target<'a> {
    /// The target's name: its folder of kept cases.
    pub name: &'static str,
    /// Inputs to start from.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens worth inserting.
    pub dictionary: Vec<&'static [u8]>,
    /// What must return for every input.
    pub check: &'a (dyn Fn(&[u8]) + Sync),
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("seeds", &self.seeds.len())
            .finish_non_exhaustive()
    }
}

/// What a run did, for the test's own output.
#[derive(Debug)]
pub struct Ran {
    /// Kept cases replayed.
    pub regressions: usize,
    /// New cases tried.
    pub cases: u64,
    /// The seed of this run (`LOADAGENT_FUZZ_SEED` replays it).
    pub seed: u64,
}

fn budget() -> Duration {
    std::env::var("LOADAGENT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(5))
        // A day at most, so the deadline is an instant that exists.
        .min(Duration::from_secs(24 * 3600))
}

fn seed() -> u64 {
    std::env::var("LOADAGENT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// The kept cases of `name`, in file-name order.
pub fn regressions(repo: &Path, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo.join("tests/fuzz/regressions").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one case; `Err` with why when it panicked or was too slow.
fn one(target: &Target<'_>, input: &[u8]) -> Result<(), String> {
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    match result {
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())),
        Ok(()) if started.elapsed() > SLOW_CASE => Err(format!(
            "took {:?}, more than {SLOW_CASE:?}",
            started.elapsed()
        )),
        Ok(()) => Ok(()),
    }
}

/// Replays the target's regressions, then fuzzes it for its budget. Panics (failing the
/// test) on the first finding, after saving it.
pub fn run(repo: &Path, target: &Target<'_>) -> Ran {
    let kept = regressions(repo, target.name);
    for (path, input) in &kept {
        if let Err(why) = one(target, input) {
            panic!(
                "fuzz target {}: regression {} fails again: {why}",
                target.name,
                path.display()
            );
        }
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut corpus: Vec<Vec<u8>> = target.seeds.clone();
    corpus.extend(kept.into_iter().map(|(_, b)| b));
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let mut input = base.clone();
        for _ in 0..rng.random_range(1..=8) {
            mutate(&mut rng, &mut input, &corpus, &target.dictionary);
        }
        input.truncate(MAX_INPUT);
        cases += 1;
        if let Err(why) = one(target, &input) {
            let dir = repo.join("target/fuzz-found").join(target.name);
            let name = format!("{seed}-{cases}");
            let saved = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join(&name), &input))
                .map_or_else(
                    |e| format!("(not saved: {e})"),
                    |()| dir.join(&name).display().to_string(),
                );
            panic!(
                "fuzz target {}: {why}\n  input saved as {saved}; copy it into tests/fuzz/regressions/{}/ once fixed\n  replay: LOADAGENT_FUZZ_SEED={seed}\n  hex: {}",
                target.name,
                target.name,
                hex(&input[..input.len().min(4096)])
            );
        }
        // Inputs the check took without complaint are good material for later mutations.
        if cases % 64 == 0 && corpus.len() < 512 {
            corpus.push(input);
        }
    }
    Ran {
        regressions: regressions(repo, target.name).len(),
        cases,
        seed,
    }
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'\n', b'"', b'['];

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    let len = input.len();
    match rng.random_range(0..9) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            // Repeat a run: long lines, deep nesting, many entries.
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(256));
            let run = input[i..i + n].to_vec();
            for _ in 0..rng.random_range(1..=16) {
                input.splice(i..i, run.iter().copied());
            }
        }
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.random_range(0..corpus.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let n = rng.random_range(1..=(other.len() - from).min(512));
                let at = rng.random_range(0..=len);
                input.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        6 | 7 if !dictionary.is_empty() => {
            let token = dictionary[rng.random_range(0..dictionary.len())];
            let at = rng.random_range(0..=len);
            input.splice(at..at, token.iter().copied());
        }
        8 if len > 4 => {
            // Overwrite with a large or boundary number, as text or as big-endian bytes.
            let numbers: [u64; 6] = [0, 1, u32::MAX as u64, u64::MAX, 1 << 31, 16_777_216];
            let n = numbers[rng.random_range(0..numbers.len())];
            let at = rng.random_range(0..len - 4);
            if rng.random_bool(0.5) {
                input.splice(at..at, n.to_string().into_bytes());
            } else {
                input[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
            }
        }
        _ => {
            let i = rng.random_range(0..=len);
            input.insert(i, rng.random());
        }
    }
}
