//! The load: a plan (what to call, on what schedule) driven by workers, or for unary calls
//! by one dispatcher per generator thread.

mod admission;
pub mod connections;
mod dispatch;
pub mod driver;
pub mod live_rate;
pub mod mix;
pub mod plan;
pub mod retry;
pub mod schedule;
mod stop;
pub mod storm;
pub mod stream;
mod taken;
mod timing;
mod web;
mod workers;

pub use driver::{drive, generator_threads};
pub use plan::{CallPlan, Plan, RunOutcome};
pub use schedule::Schedule;
