//! Command-line definitions, turned into a typed command before any work starts.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gRPC load generator and node observability agent
#[derive(Debug, Parser)]
#[command(name = "loadagent", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How the agent writes its log.
// The values' names are their own help: clap shows a doc comment on a value as its help and
// then lays the whole --help out long.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// How `compare` writes its result.
// As for `LogFormat`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    Text,
    Markdown,
    Json,
    Html,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario's load and print a summary.
    Run(RunArgs),
    /// Compare reports grouped by a platform field (arch by default): figures side by side,
    /// ratios, and whether each difference is beyond the run-to-run noise.
    Compare(CompareArgs),
    /// Summarise a saved report, and write it as HTML or CSV.
    Report {
        /// A JSON report written by `loadagent run --out`.
        report: PathBuf,
        /// Write a self-contained HTML report with plots.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the per-interval series as CSV.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
    /// Merge reports of one scenario from several machines or runs.
    Merge {
        /// Two or more JSON reports.
        #[arg(required = true, num_args = 2..)]
        reports: Vec<PathBuf>,
        /// Write the merged report here.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Merge reports of different scenarios anyway (the result says so).
        #[arg(long)]
        force: bool,
        /// Merge an incomplete set of shard reports anyway (the result names the missing).
        #[arg(long)]
        partial: bool,
    },
    /// Check a scenario without sending load: the file, the method and the request.
    Validate {
        /// The scenario file (TOML).
        scenario: PathBuf,
    },
    /// Run the node agent: probe targets, export metrics for Prometheus, until SIGTERM.
    Agent {
        /// The agent's config (TOML); without it the agent probes nothing and exports its own
        /// and the host's metrics.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to serve /metrics on (overrides the config's `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Validate the config and exit (0 valid, 2 not).
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        check_config: Option<PathBuf>,
        /// TLS and basic auth for the agent's endpoints, in the web config format Prometheus
        /// exporters share (exporter-toolkit); checked with --check-config too.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// Log lines for people (`human`) or for log collectors (`json`).
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Write the Grafana dashboards (generated from the metric definitions).
    Dashboards {
        /// The folder to write the dashboards' JSON into (it must exist).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the Prometheus alerting and recording rules (generated from the metric definitions).
    Alerts {
        /// The folder to write `loadagent.rules.yml` into (it must exist).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write the rules as a prometheus-operator PrometheusRule
        /// (`prometheusrule.yaml`) into this folder (it must exist).
        #[arg(long, value_name = "DIR")]
        kubernetes: Option<PathBuf>,
        /// An agent config whose targets have an `slo`: also write their recording rules and
        /// burn-rate alerts (`loadagent-slo.rules.yml`) and the promtool tests that prove them
        /// (`loadagent-slo.test.yml`); with --kubernetes, `prometheusrule-slo.yaml` too.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a target's health once (grpc.health.v1), with grpc-health-probe's exit codes:
    /// 0 SERVING, 1 bad arguments, 2 connection failed, 3 RPC failed, 4 not SERVING.
    /// With --method: call that unary method once and judge the answer with --expect
    /// checks: 0 every check passed, 3 the call failed (a status other than OK, and no
    /// check on `status`), 5 a check failed or the response did not decode.
    Probe(ProbeArgs),
    /// Serve the built-in reference target (loadagent.bench.v1.Bench, health, reflection).
    Target {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Serve TLS (h2 by ALPN, or HTTP/1.1 for gRPC-Web) with a certificate generated now for localhost and 127.0.0.1.
        #[arg(long)]
        tls: bool,
        /// With --tls: write the generated certificate (PEM) here, for clients to trust.
        #[arg(long, value_name = "FILE", requires = "tls")]
        cert_out: Option<PathBuf>,
    },
}

/// `loadagent run`'s arguments, taken whole by `commands::run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Write the JSON report here (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write a self-contained HTML report with plots.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write an HdrHistogram interval log (tags `corrected`, `uncorrected`).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Write the per-interval series as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run the scenario this many times, one JSON report each in --out-dir (for compare).
    #[arg(long, value_name = "N", requires = "out_dir", conflicts_with_all = ["html", "hlog", "csv"], value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// With --repeat: the folder for the reports, named SCENARIO-HOST-N.json.
    #[arg(long, value_name = "DIR", requires = "repeat", conflicts_with = "out")]
    pub out_dir: Option<PathBuf>,
    /// With --repeat: the pause between runs ("5s", "1m").
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        requires = "repeat"
    )]
    pub pause: String,
    /// Run shard INDEX of COUNT of a distributed run (INDEX from 0): the open model's
    /// sends k with k mod COUNT == INDEX; the closed model's concurrency and requests
    /// split. In a Kubernetes Indexed Job: --shard $(JOB_COMPLETION_INDEX)/COUNT.
    #[arg(long, value_name = "INDEX/COUNT", conflicts_with = "repeat")]
    pub shard: Option<String>,
    /// Prepare everything (types, outputs, connections), then start the schedule at TIME:
    /// RFC 3339 in UTC ("2026-11-28T21:30:00Z") or Unix seconds.
    #[arg(long, value_name = "TIME", conflicts_with = "repeat")]
    pub start_at: Option<String>,
    /// Serve the run's metrics while it runs (the agent's run metrics, plus `shard`) at
    /// http://ADDR/metrics, for a PodMonitor on a distributed run's pods.
    #[arg(long, value_name = "ADDR", conflicts_with = "repeat")]
    pub metrics_listen: Option<String>,
    /// Record KEY=VALUE in the report's `labels` (repeatable; over the scenario's
    /// `labels`): what the tool cannot see, e.g. target_arch=arm64, price_per_hour=0.145.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Push the run's metrics (those of --metrics-listen) to a Prometheus remote-write
    /// receiver after every interval and at the end (remote write 1.0). The receiver's
    /// trouble never fails the run: it is retried (5xx, 429), counted and said once.
    #[arg(long, value_name = "URL", conflicts_with = "repeat")]
    pub remote_write: Option<String>,
    /// A header sent with every push (repeatable), e.g. X-Scope-OrgID=team-a.
    #[arg(long, value_name = "NAME=VALUE", requires = "remote_write")]
    pub remote_write_header: Vec<String>,
    /// A file holding the bearer token sent with every push.
    #[arg(long, value_name = "FILE", requires = "remote_write")]
    pub remote_write_bearer_token_file: Option<PathBuf>,
    /// Basic auth for the pushes: the user (the password from --remote-write-password-file).
    #[arg(long, value_name = "USER", requires_all = ["remote_write", "remote_write_password_file"])]
    pub remote_write_user: Option<String>,
    /// A file holding the basic-auth password.
    #[arg(long, value_name = "FILE", requires = "remote_write_user")]
    pub remote_write_password_file: Option<PathBuf>,
}

/// `loadagent probe`'s arguments, taken whole by `commands::probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `host:port`.
    pub address: String,
    /// The health service name ("" = the whole server).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Deadline for connecting and for the check, e.g. "1s".
    #[arg(long, default_value = "1s")]
    pub timeout: String,
    /// Use Watch (the first status it sends) instead of Check.
    #[arg(long)]
    pub watch: bool,
    /// Request metadata, `-H key=value` (repeatable).
    #[arg(long = "metadata", short = 'H', value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Connect with TLS (system roots unless --tls-ca).
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CAs to trust (default: the system roots).
    #[arg(long, value_name = "PEM", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// The name to verify the server's certificate against (default: the address's host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
    /// Accept any server certificate (says so on stderr).
    #[arg(long, requires = "tls")]
    pub tls_no_verify: bool,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls")]
    pub tls_key: Option<PathBuf>,
    /// Call this unary method (package.Service/Method) instead of the health service.
    #[arg(long, conflicts_with_all = ["watch", "service"])]
    pub method: Option<String>,
    /// The request, JSON in the protobuf mapping (default "{}").
    #[arg(long, requires = "method", value_name = "JSON")]
    pub data: Option<String>,
    /// A check on the answer (repeatable): `status == OK`, `field.path == "x"`,
    /// `items.0.count >= 3`, `name matches "^a"`. Without one on `status`, the call must
    /// end OK.
    #[arg(long, requires = "method", value_name = "CHECK")]
    pub expect: Vec<String>,
    /// The method's types: .proto files (repeatable); else --protoset; else reflection.
    #[arg(long, requires = "method", value_name = "FILE")]
    pub proto: Vec<PathBuf>,
    /// Where the .proto files' imports are looked for (repeatable).
    #[arg(long = "import-path", requires = "proto", value_name = "DIR")]
    pub import_path: Vec<PathBuf>,
    /// The method's types as a protoset (`protoc --include_imports -o FILE`).
    #[arg(
        long,
        requires = "method",
        conflicts_with = "proto",
        value_name = "FILE"
    )]
    pub protoset: Option<PathBuf>,
    /// The method probe's protocol: grpc (native), grpc-web or grpc-web-text.
    #[arg(long, requires = "method", value_name = "PROTOCOL", default_value = "grpc", value_parser = ["grpc", "grpc-web", "grpc-web-text"])]
    pub protocol: String,
    /// What gRPC-Web goes over: 1.1 or 2.
    #[arg(long = "http-version", value_name = "VERSION", default_value = "1.1", value_parser = ["1.1", "2"])]
    pub http_version: String,
}

/// `loadagent compare`'s arguments, taken whole by `commands::reports::compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Two or more JSON reports (several runs per group give a noise estimate).
    #[arg(required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// The platform field to group by (arch, cpu_model, hostname, rust_target, …), or a
    /// run label: label:KEY.
    #[arg(long, default_value = "arch")]
    pub by: String,
    /// How to write the comparison.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Write here instead of stdout (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Compare reports of different scenarios anyway (the result says so).
    #[arg(long)]
    pub force: bool,
    /// The group the others are compared with (a value of --by; default: the first seen).
    #[arg(long, value_name = "GROUP")]
    pub baseline: Option<String>,
    /// Exit 3 when one of these figures (rps, latency_p99_us, cpu_seconds_per_1k, …) of
    /// a group is worse than the baseline's beyond noise: a regression gate for CI.
    #[arg(long, value_name = "FIGURE[,FIGURE]", value_delimiter = ',')]
    pub fail_on: Vec<String>,
}
