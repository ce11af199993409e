//! Metric definitions: every metric the agent exports is defined once here (name, help,
//! labels), so dashboards and alert rules can be generated from the same list.

pub mod definitions;
pub mod live;
pub mod metrics;
pub mod node;
pub mod probe_series;
pub mod remote_write;
pub mod traces;

pub use metrics::{Metrics, DEFINITIONS};
