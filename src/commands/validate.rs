//! `loadagent validate`: every check a run makes before sending load, and no load.

use std::path::Path;

use super::prepare;
use crate::error::CommandError;

pub async fn validate(path: &Path) -> Result<(), CommandError> {
    let p = prepare(path).await?;
    println!(
        "{}: ok — {} ({}) → {}, method {} (types from {})",
        path.display(),
        p.scenario.name,
        p.scenario.kind.as_str(),
        p.scenario.target.address.describe(),
        p.scenario.call.method.value,
        p.schema_source
    );
    Ok(())
}
