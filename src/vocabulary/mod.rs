//! The words every layer shares: addresses and fleet names, durations, shards, TLS options,
//! compression, balance, protocols, the scenario's typed model and its defaults, conditions
//! on figures, places in a file (`Loc`, `At`). Pure types and their parsers — no TOML:
//! `scenario/` reads files into these, and `tls/`, `grpc/`, `host/`, `telemetry/` and the
//! rest stand on them without standing on the reader.

pub mod address;
pub mod capacity;
pub mod conditions;
pub mod defaults;
pub mod duration;
pub mod labels;
pub mod model;
pub mod naming;
pub mod problems;
pub mod shard;
pub mod slo;
pub mod source;
pub mod tracing;
pub mod url;
pub mod watch;

pub use address::{AddressError, HostPort};
pub use defaults::*;
pub use model::*;
pub use naming::{FleetName, Lookup, NameError};
pub use shard::{Shard, ShardError};
pub use source::{At, Loc, Source};
