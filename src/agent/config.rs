//! `agent.toml`: where the agent listens and what it probes. Read like scenarios: every
//! problem reported at once, with file, line, column and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use super::probe_keys::{read_modules, read_probe_keys};
pub use super::probe_keys::{MethodSpec, ProbeKeys, ProbeMode};
use crate::scenario::reader::{Ctx, TableReader};
use crate::vocabulary::problems::{Problem, Problems};
use crate::vocabulary::slo::{self, Slo};
use crate::vocabulary::{FleetName, HostPort, Source, DEFAULT_RESOLVE_EVERY, MIN_RESOLVE_EVERY};

/// Where the agent serves when the config has no `listen`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9477";

/// Where a target is: one address, or a DNS name whose every backend is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAddress {
    /// One address.
    Fixed(HostPort),
    /// A DNS name: every backend it resolves to is probed.
    Fleet(FleetName),
}

impl ProbeAddress {
    /// The TLS verification name and SNI: the host, or the DNS name (never a backend's IP).
    pub fn host(&self) -> &str {
        match self {
            Self::Fixed(a) => a.host(),
            Self::Fleet(n) => n.host(),
        }
    }
}

impl std::fmt::Display for ProbeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(a) => a.fmt(f),
            Self::Fleet(n) => n.fmt(f),
        }
    }
}

/// One `[[targets]]` entry.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The `target` label.
    pub name: String,
    /// Where it is.
    pub address: ProbeAddress,
    /// How often a DNS name is resolved again (`ProbeAddress::Fleet` only).
    pub resolve_every: Duration,
    /// How often it is probed.
    pub interval: Duration,
    /// How it is probed: the keys a target shares with a `[modules.NAME]` table.
    pub probe: ProbeKeys,
    /// `slo`: its objectives, for `loadagent alerts --config` (burn-rate alerts).
    pub slo: Option<Slo>,
}

#[derive(Debug, Clone)]
/// The agent's config, read and checked.
pub struct AgentConfig {
    /// The file it came from (`None`: no config, the defaults).
    pub path: Option<PathBuf>,
    /// Where to serve `/metrics` and the API.
    pub listen: String,
    /// `[[targets]]`: what to probe.
    pub targets: Vec<ProbeTarget>,
    /// `[host] processes`: processes to watch besides the agent itself, by name (all
    /// processes of that name, summed) or by pid file (an entry with a `/`).
    pub processes: Vec<String>,
    /// `[[schedules]]`: scenarios run every so often.
    pub schedules: Vec<ScheduleConfig>,
    /// `[tracing]`: spans for probes and scheduled runs.
    pub tracing: crate::vocabulary::tracing::TracingConfig,
    /// `[modules.NAME]`: how `/probe?module=NAME` probes the target Prometheus names.
    pub modules: std::collections::BTreeMap<String, ProbeKeys>,
    /// `[probe]`: the bounds of the `/probe` endpoint.
    pub endpoint: super::probe_bounds::EndpointConfig,
    /// `[remote_write]`: where scheduled runs' series are pushed.
    pub remote_write: Option<crate::telemetry::remote_write::Settings>,
}

/// `[[schedules]]`: a scenario the agent runs every so often, with the same driver as
/// `loadagent run`.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The scenario file (relative paths are relative to the agent's config).
    pub scenario: PathBuf,
    /// How often it runs.
    pub every: Duration,
    /// A random delay of up to this much before each run, so a fleet does not run in step.
    pub jitter: Duration,
    /// Whether a run may start while the last is still going.
    pub allow_overlap: bool,
}

impl Default for AgentConfig {
    /// No targets: the agent exports its own and the host's metrics.
    fn default() -> Self {
        Self {
            path: None,
            listen: DEFAULT_LISTEN.into(),
            targets: Vec::new(),
            processes: Vec::new(),
            schedules: Vec::new(),
            tracing: Default::default(),
            modules: Default::default(),
            endpoint: Default::default(),
            remote_write: None,
        }
    }
}

impl AgentConfig {
    /// Every target's SLO latency threshold, in seconds: buckets the probe latency histogram
    /// must have.
    pub fn slo_latencies(&self) -> Vec<f64> {
        self.targets
            .iter()
            .filter_map(|t| t.slo.as_ref()?.latency)
            .map(|l| l.as_secs_f64())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
/// Why a config was not taken.
pub enum ConfigError {
    #[error("{0}")]
    /// The file could not be read.
    Read(#[from] crate::input::InputError),
    #[error("{0} is empty (a file being written?); the old config keeps running")]
    /// The file is empty.
    Empty(PathBuf),
    #[error("{0}")]
    /// The file has problems (every one, with line and column).
    Invalid(Problems),
}

/// Why a listen address is refused, and how to write one.
pub fn bad_listen(value: &str) -> String {
    format!(
        "\"{value}\" is not an address to listen on; write \"host:port\" with a port from 0 to 65535 (e.g. \"0.0.0.0:9477\", \"127.0.0.1:9477\", \"[::]:9477\")"
    )
}

/// Reads the config again on SIGHUP. An empty file is refused: it is almost always one
/// being written, and taking it would silently drop every target.
pub fn reload(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = crate::input::read_text(path, crate::input::FileKind::AgentConfig)?;
    if text.trim().is_empty() {
        return Err(ConfigError::Empty(path.to_path_buf()));
    }
    parse(&Source::new(path, text)).map_err(ConfigError::Invalid)
}

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = crate::input::read_text(path, crate::input::FileKind::AgentConfig)?;
    parse(&Source::new(path, text)).map_err(ConfigError::Invalid)
}

/// Checks a config's text, reporting every problem.
pub fn parse(source: &Source) -> Result<AgentConfig, Problems> {
    let fail = |list| Problems {
        path: source.path.clone(),
        list,
    };
    let (doc, syntax) = DeTable::parse_recoverable(&source.text);
    if !syntax.is_empty() {
        return Err(fail(
            syntax
                .iter()
                .map(|e| Problem {
                    loc: source.loc(e.span().map_or(0, |s| s.start)),
                    key: String::new(),
                    message: format!("TOML syntax error: {}", e.message().trim()),
                })
                .collect(),
        ));
    }
    let ctx = Ctx::new(source);
    let root = TableReader::root(&ctx, &doc);
    let listen = root.string("listen").map_or_else(
        || DEFAULT_LISTEN.to_string(),
        |l| {
            if !crate::scenario::valid_listen(&l.value) {
                ctx.report_at(l.loc, "listen", bad_listen(&l.value));
            }
            l.value
        },
    );
    let mut targets: Vec<ProbeTarget> = Vec::new();
    let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
    for t in root.tables("targets") {
        let name = t.required_string(
            "name",
            "each target needs a `name` (its label in the metrics)",
        );
        let address = t.required_string(
            "address",
            "write \"host:port\" or a DNS name (\"dns:///NAME:PORT\", \"dns+srv://…\")",
        );
        let resolve_every = t.duration("resolve_every", true);
        let interval = t
            .duration("interval", true)
            .map_or(Duration::from_secs(5), |d| d.value);
        let address = address.and_then(|a| match FleetName::parse(&a.value) {
            Ok(Some(name)) => Some(ProbeAddress::Fleet(name)),
            Ok(None) => match HostPort::parse(&a.value) {
                Ok(hp) => Some(ProbeAddress::Fixed(hp)),
                Err(e) => {
                    ctx.report_at(a.loc, &t.key_path("address"), e.to_string());
                    None
                }
            },
            Err(e) => {
                ctx.report_at(a.loc, &t.key_path("address"), e.to_string());
                None
            }
        });
        let probe = read_probe_keys(&t, address.as_ref().map(ProbeAddress::host));
        let slo = t.table("slo").map(|s| read_slo(&s, &probe));
        t.finish();
        if let Some(r) = &resolve_every {
            if matches!(address, Some(ProbeAddress::Fixed(_))) {
                ctx.report_at(
                    r.loc,
                    &t.key_path("resolve_every"),
                    "applies to a DNS name only (\"dns:///NAME:PORT\", \"dns+srv://…\"); remove it or name the target by DNS",
                );
            } else if r.value < MIN_RESOLVE_EVERY {
                ctx.report_at(
                    r.loc,
                    &t.key_path("resolve_every"),
                    format!("at least {MIN_RESOLVE_EVERY:?}; write e.g. \"5s\""),
                );
            }
        }
        if let Some(n) = &name {
            // A set, not a scan of the targets so far: 20,000 targets read in linear time.
            if !names.insert(n.value.clone()) {
                ctx.report_at(
                    n.loc,
                    &t.key_path("name"),
                    format!(
                        "a second target named \"{}\": names label the metrics and must differ",
                        n.value
                    ),
                );
            }
        }
        let slo = match slo {
            None => Some(None),
            Some(s) => s.map(Some),
        };
        if let (Some(name), Some(address), Some(probe), Some(slo)) = (name, address, probe, slo) {
            targets.push(ProbeTarget {
                name: name.value,
                address,
                resolve_every: resolve_every.map_or(DEFAULT_RESOLVE_EVERY, |r| r.value),
                interval,
                probe,
                slo,
            });
        }
    }
    let modules = root
        .table("modules")
        .map(|m| read_modules(&m))
        .unwrap_or_default();
    let endpoint = root
        .table("probe")
        .map(|p| super::probe_bounds::read_endpoint(&p))
        .unwrap_or_default();
    let mut schedules = Vec::new();
    for t in root.tables("schedules") {
        let scenario = t.required_string("scenario", "write `scenario = \"scenarios/unary.toml\"`");
        let every = t.duration("every", true);
        if !t.has("every") {
            ctx.report_at(
                t.loc(),
                &t.key_path("every"),
                "missing; write how often to run, e.g. every = \"5m\"",
            );
        }
        let jitter = t
            .duration("jitter", false)
            .map_or(Duration::ZERO, |d| d.value);
        let allow_overlap = t.boolean("allow_overlap").unwrap_or(false);
        t.finish();
        if let Some(s) = &scenario {
            let path = source.resolve(&s.value);
            // The scenario is checked now, so a broken one is a config problem, not a failed run.
            if let Err(e) = crate::scenario::load(&path) {
                ctx.report_at(
                    s.loc,
                    &t.key_path("scenario"),
                    format!("{}", e).trim_end().to_string(),
                );
            }
        }
        if let (Some(s), Some(every)) = (scenario, every) {
            schedules.push(ScheduleConfig {
                scenario: source.resolve(&s.value),
                every: every.value,
                jitter,
                allow_overlap,
            });
        }
    }
    let processes = match root.table("host") {
        Some(h) => {
            let list = h
                .string_list("processes")
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.value)
                .collect();
            h.finish();
            list
        }
        None => Vec::new(),
    };
    let remote_write = root
        .table("remote_write")
        .and_then(|t| read_remote_write(&t, source));
    let tracing = root
        .table("tracing")
        .map(|t| crate::scenario::tracing::read_config(&t))
        .unwrap_or_default();
    root.finish();
    let problems = ctx.into_problems();
    if problems.is_empty() {
        Ok(AgentConfig {
            path: Some(source.path.clone()),
            listen,
            targets,
            processes,
            schedules,
            tracing,
            modules,
            endpoint,
            remote_write,
        })
    } else {
        Err(fail(problems))
    }
}

/// `[remote_write]`: `url`, `headers`, `bearer_token_file` or `user` with `password_file`
/// (paths relative to the config); the files are read now. `None` when absent or wrong
/// (reported).
fn read_remote_write(
    t: &TableReader<'_, '_, '_>,
    source: &Source,
) -> Option<crate::telemetry::remote_write::Settings> {
    let url = t.required_string(
        "url",
        "write the receiver's URL, e.g. url = \"http://prometheus:9090/api/v1/write\"",
    );
    let headers: Vec<String> = t
        .string_map("headers")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{}={v}", k.value))
        .collect();
    let token = t.string("bearer_token_file");
    let user = t.string("user");
    let password = t.string("password_file");
    t.finish();
    if user.is_some() != password.is_some() {
        t.ctx().report_at(
            t.loc(),
            &t.key_path(if user.is_some() {
                "password_file"
            } else {
                "user"
            }),
            "basic auth needs both `user` and `password_file`",
        );
        return None;
    }
    let url = url?;
    let token = token.map(|p| source.resolve(&p.value));
    let password = password.map(|p| source.resolve(&p.value));
    let basic = user
        .as_ref()
        .map(|u| u.value.as_str())
        .zip(password.as_deref());
    match crate::telemetry::remote_write::Settings::new(
        &url.value,
        &headers,
        token.as_deref(),
        basic,
    ) {
        Ok(s) => Some(s),
        Err(why) => {
            t.ctx().report_at(url.loc, &t.key_path("url"), why);
            None
        }
    }
}

/// `slo = { objective = "99.9%", window = "30d", latency = "300ms", latency_objective = "99%" }`;
/// `None` when something is wrong (reported).
fn read_slo(t: &TableReader<'_, '_, '_>, probe: &Option<ProbeKeys>) -> Option<Slo> {
    let ctx = t.ctx();
    let share = |key: &'static str| {
        t.string(key)
            .and_then(|o| match slo::parse_objective(&o.value) {
                Ok(v) => Some(v),
                Err(why) => {
                    ctx.report_at(o.loc, &t.key_path(key), why);
                    None
                }
            })
    };
    let objective = share("objective");
    if !t.has("objective") {
        ctx.report_at(
            t.loc(),
            &t.key_path("objective"),
            "missing; write the share of probes that must pass, e.g. objective = \"99.9%\"",
        );
    }
    let window = match t.duration("window", true) {
        None => Some(Duration::from_secs(30 * 86_400)),
        Some(w) if w.value < slo::MIN_WINDOW || w.value > slo::MAX_WINDOW => {
            ctx.report_at(
                w.loc,
                &t.key_path("window"),
                "from 3d (the longest alert window) to 365d; write e.g. \"30d\"",
            );
            None
        }
        Some(w) => Some(w.value),
    };
    let latency = t.duration("latency", true);
    if let Some(l) = &latency {
        if l.value > slo::MAX_LATENCY || l.value < Duration::from_micros(100) {
            ctx.report_at(
                l.loc,
                &t.key_path("latency"),
                "from 100us to 60s: the share of probes faster than it is measured; write e.g. \"300ms\"",
            );
        }
    }
    let latency_objective = share("latency_objective");
    if t.has("latency_objective") && latency.is_none() {
        ctx.report_at(
            t.loc(),
            &t.key_path("latency_objective"),
            "belongs to a latency objective: add `latency = \"300ms\"` or remove it",
        );
    }
    t.finish();
    if probe.as_ref().is_some_and(|p| p.mode == ProbeMode::Watch) {
        ctx.report_at(
            t.loc(),
            &t.key_path("objective"),
            "an SLO counts probes, and a Watch counts changes of status: use mode = \"check\" (the default) for a target with an SLO",
        );
        return None;
    }
    let objective = objective?;
    Some(Slo {
        objective,
        window: window?,
        latency: match latency {
            Some(l) if l.value > slo::MAX_LATENCY || l.value < Duration::from_micros(100) => {
                return None
            }
            l => l.map(|l| l.value),
        },
        latency_objective: latency_objective.unwrap_or(objective),
    })
}
