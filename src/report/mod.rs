//! Reports: the JSON schema, the human summary, platform and process facts, file writing.

pub mod cgroup;
pub mod compare;
pub mod compare_format;
pub mod csv;
pub mod exposition;
pub mod hlog;
pub mod html;
pub mod merge;
pub mod outputs;
pub mod platform;
pub mod process;
pub mod schema;
pub mod summary;
pub mod svg;
pub mod target_process;
pub mod thresholds;
pub mod write;

pub use schema::{Report, SCHEMA};
