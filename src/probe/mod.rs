//! The probe library: one health check (grpc.health.v1 Check, or the first answer of Watch)
//! and one way to prepare a method probe from the server's reflection, for every caller —
//! `loadagent probe` (flags, printing, exit codes) and the agent's prober (scheduling,
//! publishing, fleet following).

pub mod expect;
pub mod health;
pub mod method;
pub mod once;
pub mod verdict;
