//! The probe library, one for every caller — `loadagent probe` (flags, printing, exit codes),
//! the agent's prober (scheduling, publishing, fleet following) and, next, `/probe`: the
//! health check (grpc.health.v1 Check, or the first answer of Watch), the method probe
//! (types from files or by reflection, `expect` checks, native or gRPC-Web), every answer
//! judged once (`verdict`), and a whole probe from nothing (`once`).

pub mod expect;
pub mod health;
pub mod method;
pub mod once;
pub mod verdict;

/// Metadata from `pairs`; a pair whose key or value is not valid in a header is left out
/// (whoever builds a probe checks them first, naming the bad one).
pub fn metadata<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> tonic::metadata::MetadataMap {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::MetadataKey<_>>(), v.parse()) {
            map.insert(k, v);
        }
    }
    map
}
