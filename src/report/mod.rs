//! Reports: the JSON schema, the human summary, platform and process facts, file writing.

pub mod platform;
pub mod process;
pub mod schema;
pub mod summary;
pub mod write;

pub use schema::{Report, SCHEMA};
