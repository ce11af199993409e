//! Facts about machines and processes, read on this node: the platform fingerprint, cgroup
//! limits, /proc (the one reader of it), this process's usage over a run, the target's
//! process and its Prometheus endpoint (with the exposition parser).

pub mod cgroup;
pub mod exposition;
pub mod platform;
pub mod process;
pub mod procfs;
pub mod target_process;
pub mod watched;
