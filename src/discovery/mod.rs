//! Where a target's backends are: one fixed address, or a fleet's DNS name resolved now and
//! again every `resolve_every` (`resolver.rs`), published as a changing membership
//! (`fleet.rs`) that load and probes follow.

pub mod fleet;
pub mod resolver;

pub use fleet::{Backend, BackendHistory, Fleet, Membership, ResolveStats};
pub use resolver::{NameResolver, ResolveFailure, Resolved, MAX_BACKENDS};
