//! `loadagent validate`: every check a run makes before sending load, and no load.

use std::path::Path;

use crate::error::CommandError;
use crate::run::{load, prepare};

pub(super) async fn validate(path: &Path) -> Result<(), CommandError> {
    let p = prepare(load(path)?).await?;
    println!(
        "{}: ok — {} ({}) → {}{}",
        path.display(),
        p.scenario.name,
        p.scenario.kind.as_str(),
        p.scenario.target.address.describe(),
        match &p.scenario.call {
            Some(c) => format!(
                ", method {} (types from {})",
                c.method.value, p.schema_source
            ),
            None => ", handshakes only (no call)".to_string(),
        }
    );
    Ok(())
}
