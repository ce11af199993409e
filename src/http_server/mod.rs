//! The HTTP server every endpoint of this program is served by — the agent's `/metrics`,
//! `/api/v1/…` and the live metrics of `run --metrics-listen` — with the rules that keep it
//! answering (`serve`) and exporter-toolkit's web config for TLS and basic auth
//! (`web_config`).

pub mod serve;
pub mod web_config;
