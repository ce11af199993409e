//! Reports: the JSON schema, the human summary, the outputs (HTML, hlog, CSV) and file writing,
//! merging, comparing and thresholds.

pub mod capacity_chart;
pub mod compare;
pub mod compare_format;
pub mod csv;
pub mod figures;
pub mod hlog;
pub mod html;
pub mod merge;
pub mod metric;
pub mod outputs;
pub mod schema;
pub mod shards;
pub mod summary;
pub mod svg;
pub mod thresholds;
pub mod units;
pub mod write;

pub use schema::{Report, SCHEMA};
