//! The load: a plan (what to call, on what schedule) driven by workers.

pub mod driver;
pub mod schedule;
mod unary;

pub use driver::{drive, generator_threads, CallPlan, Plan, RunOutcome};
pub use schedule::Schedule;
