//! The load: a plan (what to call, on what schedule) driven by workers, or for unary calls
//! by one dispatcher per generator thread.

mod dispatch;
pub mod driver;
pub mod schedule;
mod unary;

pub use driver::{drive, generator_threads, CallPlan, Plan, RunOutcome};
pub use schedule::Schedule;
