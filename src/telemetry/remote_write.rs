//! Prometheus remote write 1.0 (`run --remote-write URL`): a registry's series pushed as a
//! snappy-compressed protobuf `WriteRequest` after every interval and once at the end, so a
//! short-lived run's figures land even if no scrape ever saw it. The receiver's trouble never
//! fails or stalls the run: 5xx, 429 and connection failures are retried with backoff (in
//! order: a receiver takes samples of a series in time order), 4xx is not, and what could
//! not be delivered is counted.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prometheus::proto::{MetricFamily, MetricType};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::input::{read_text, FileKind};
use crate::vocabulary::HostPort;

/// Batches kept while the receiver fails; past this the oldest is dropped (and counted).
pub const MAX_PENDING: usize = 64;
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the last push may take at the end of a run, retries included.
pub const FINAL_FLUSH: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The remote-write 1.0 messages (prometheus/prompb), the fields a sender needs.
mod prompb {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub(super) timeseries: Vec<TimeSeries>,
    }
    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub(super) labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub(super) samples: Vec<Sample>,
    }
    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Label {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(string, tag = "2")]
        pub(super) value: String,
    }
    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(double, tag = "1")]
        pub(super) value: f64,
        #[prost(int64, tag = "2")]
        pub(super) timestamp: i64,
    }
}

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The receiver's URL (`http://…/api/v1/write`).
    pub url: http::Uri,
    address: HostPort,
    tls: Option<crate::tls::ClientTls>,
    /// Extra headers, then `Authorization` when a token or password was given.
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Labels added to every series that lacks them (`job`, `instance`: what a scrape adds).
    labels: Vec<(String, String)>,
}

impl Settings {
    /// Checks the URL and reads the secrets: `headers` as `NAME=VALUE`, a bearer token or a
    /// basic-auth password from a file (the first line, trimmed). Errors say which of them is
    /// wrong (the caller names the flag or key).
    pub fn new(
        url: &str,
        headers: &[String],
        bearer_token_file: Option<&Path>,
        basic_auth: Option<(&str, &Path)>,
    ) -> Result<Self, String> {
        let bad = |why: String| format!("{url}: {why}");
        crate::vocabulary::url::check_url(
            url,
            &["http", "https"],
            "http and https",
            "http://prometheus:9090/api/v1/write",
        )
        .map_err(|e| e.to_string())?;
        let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = HostPort::parse(&format!(
            "{}:{port}",
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        ))
        .map_err(|e| bad(e.to_string()))?;
        let tls = if https {
            let options = crate::vocabulary::TlsOptions::system_roots("http/1.1");
            Some(
                crate::tls::ClientTls::build(&options, address.host(), None)
                    .map_err(|e| bad(e.to_string()))?,
            )
        } else {
            None
        };
        let mut list = Vec::new();
        for h in headers {
            let (name, value) = h
                .split_once('=')
                .ok_or_else(|| format!("header `{h}`: write NAME=VALUE"))?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("header `{h}`: `{name}` is not a header name"))?;
            let value = http::HeaderValue::from_str(value.trim())
                .map_err(|_| format!("header `{h}`: the value cannot be a header value"))?;
            list.push((name, value));
        }
        let secret = |what: &str, path: &Path| -> Result<String, String> {
            let text = read_text(path, FileKind::Secret).map_err(|e| format!("{what}: {e}"))?;
            let line = text.lines().next().unwrap_or_default().trim().to_string();
            if line.is_empty() {
                return Err(format!("{what} {}: the file is empty", path.display()));
            }
            Ok(line)
        };
        let authorization = match (bearer_token_file, basic_auth) {
            (Some(_), Some(_)) => return Err("a bearer token and basic auth: give one".into()),
            (Some(path), None) => Some(format!("Bearer {}", secret("bearer token file", path)?)),
            (None, Some((user, path))) => {
                use base64::Engine;
                let password = secret("password file", path)?;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ))
            }
            (None, None) => None,
        };
        if let Some(a) = authorization {
            let value = http::HeaderValue::from_str(&a)
                .map_err(|_| "the token or password cannot be sent in a header".to_string())?;
            list.push((http::header::AUTHORIZATION, value));
        }
        Ok(Self {
            url: uri,
            address,
            tls,
            headers: list,
            labels: Vec::new(),
        })
    }

    /// Adds `labels` to every series pushed that does not have them: `job` and `instance`,
    /// which a scrape would add, so that the series of two nodes or two runs never collide.
    pub fn with_labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }
}

/// Every series of `families` as remote-write time series with one sample at `at_ms`:
/// counters and gauges by name, histograms as `_bucket{le}`, `_sum` and `_count`; labels
/// sorted by name, as the protocol requires.
fn time_series(
    families: &[MetricFamily],
    extra: &[(String, String)],
    at_ms: i64,
) -> Vec<prompb::TimeSeries> {
    let mut out = Vec::new();
    let mut push = |name: String, labels: &[(String, String)], value: f64| {
        let mut all: Vec<prompb::Label> = labels
            .iter()
            .chain(
                extra
                    .iter()
                    .filter(|(k, _)| !labels.iter().any(|(n, _)| n == k)),
            )
            .map(|(n, v)| prompb::Label {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        all.push(prompb::Label {
            name: "__name__".into(),
            value: name,
        });
        all.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(prompb::TimeSeries {
            labels: all,
            samples: vec![prompb::Sample {
                value,
                timestamp: at_ms,
            }],
        });
    };
    for family in families {
        let name = family.name();
        for m in family.get_metric() {
            let labels: Vec<(String, String)> = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            match family.get_field_type() {
                MetricType::COUNTER => push(name.to_string(), &labels, m.get_counter().get_value()),
                MetricType::GAUGE => push(name.to_string(), &labels, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        let mut with_le = labels.clone();
                        with_le.push(("le".into(), format!("{}", b.upper_bound())));
                        push(
                            format!("{name}_bucket"),
                            &with_le,
                            b.cumulative_count() as f64,
                        );
                    }
                    let mut inf = labels.clone();
                    inf.push(("le".into(), "+Inf".into()));
                    push(format!("{name}_bucket"), &inf, h.get_sample_count() as f64);
                    push(format!("{name}_sum"), &labels, h.get_sample_sum());
                    push(
                        format!("{name}_count"),
                        &labels,
                        h.get_sample_count() as f64,
                    );
                }
                // Not made by this project's registries.
                _ => {}
            }
        }
    }
    out
}

/// A `WriteRequest` of `families` (with `extra` labels) at `at`, protobuf then snappy
/// (block format).
pub fn encode(families: &[MetricFamily], extra: &[(String, String)], at: SystemTime) -> Vec<u8> {
    use prost::Message;
    let at_ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let request = prompb::WriteRequest {
        timeseries: time_series(families, extra, at_ms),
    };
    let mut encoder = snap::raw::Encoder::new();
    encoder
        .compress_vec(&request.encode_to_vec())
        .unwrap_or_default()
}

/// What became of the pushes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Batches the receiver accepted.
    pub sent: u64,
    /// Attempts that failed and were tried again (5xx, 429, no connection).
    pub retries: u64,
    /// Batches the receiver refused with a 4xx (not retried).
    pub rejected: u64,
    /// Batches dropped: more than `MAX_PENDING` waiting, or still undelivered at the end.
    pub lost: u64,
}

/// How one POST went.
enum Answer {
    Accepted,
    /// 4xx other than 429: the batch is wrong for the receiver; sending it again will not help.
    Refused(String),
    /// 5xx, 429, no connection, no answer in time: try again later.
    Failed(String),
}

async fn post(settings: &Settings, body: Bytes) -> Answer {
    let attempt = async {
        let endpoint = crate::grpc::channel::Endpoint {
            address: settings.address.clone(),
            connect_timeout: POST_TIMEOUT,
            tls: settings.tls.clone(),
        };
        let transport = crate::grpc::channel::open_transport_for(&endpoint, b"http/1.1")
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(transport))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut request =
            http::Request::post(settings.url.path_and_query().map_or("/", |p| p.as_str()))
                .header(
                    http::header::HOST,
                    settings.url.authority().map_or("", |a| a.as_str()),
                )
                .header(http::header::CONTENT_ENCODING, "snappy")
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .header(
                    http::header::USER_AGENT,
                    concat!("loadagent/", env!("CARGO_PKG_VERSION")),
                );
        for (name, value) in &settings.headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // A little of the body says why; never more than that is read.
        let why = http_body_util::Limited::new(response.into_body(), 512)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        Ok::<_, String>((status, why))
    };
    match tokio::time::timeout(POST_TIMEOUT, attempt).await {
        Err(_) => Answer::Failed(format!("no answer within {POST_TIMEOUT:?}")),
        Ok(Err(e)) => Answer::Failed(e),
        Ok(Ok((status, _))) if status.is_success() => Answer::Accepted,
        Ok(Ok((status, why))) if status.as_u16() == 429 || status.is_server_error() => {
            Answer::Failed(format!("HTTP {status}: {why}"))
        }
        Ok(Ok((status, why))) => Answer::Refused(format!("HTTP {status}: {why}")),
    }
}

/// Pushes a registry's series in the background.
#[derive(Debug)]
pub struct Pusher {
    now: Arc<Notify>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Delivery>,
}

/// Asks a `Pusher` to push.
#[derive(Debug, Clone)]
pub struct PushHandle(Arc<Notify>);

impl PushHandle {
    /// Pushes the series as they are now (without waiting: pushes that come faster than the
    /// receiver takes them are folded into one).
    pub fn push(&self) {
        self.0.notify_one();
    }
}

/// What a pusher reads and where it reports trouble.
pub struct PushSource {
    /// The series, gathered at each push.
    pub gather: Box<dyn Fn() -> Vec<MetricFamily> + Send + Sync>,
    /// Counts trouble by kind (`retried`, `rejected`, `lost`): `loadagent_errors_total`'s
    /// `component="remote_write"`.
    pub count: Box<dyn Fn(&'static str, u64) + Send + Sync>,
    /// Says the first trouble, once (the library never prints).
    pub say_once: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushSource")
    }
}

impl Pusher {
    /// Starts pushing to `settings` what `source` gathers, at each `push` and at `finish`.
    pub fn start(settings: Settings, source: PushSource) -> Self {
        let now = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(settings, source, now.clone(), stop.clone()));
        Self { now, stop, task }
    }

    /// A handle that asks for pushes (for the interval hook).
    pub fn handle(&self) -> PushHandle {
        PushHandle(self.now.clone())
    }

    /// Pushes the series one last time, within `FINAL_FLUSH`, and says what was delivered.
    pub async fn finish(self) -> Delivery {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn run(
    settings: Settings,
    source: PushSource,
    now: Arc<Notify>,
    stop: CancellationToken,
) -> Delivery {
    let mut delivery = Delivery::default();
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut said = false;
    let mut trouble = |delivery: &mut Delivery, kind: &'static str, why: &str| {
        (source.count)(kind, 1);
        match kind {
            "retried" => delivery.retries += 1,
            "rejected" => delivery.rejected += 1,
            _ => delivery.lost += 1,
        }
        if !said {
            said = true;
            (source.say_once)(&format!(
                "remote write to {}: {why} (the run goes on; retried on 5xx, 429 and no connection; counted in loadagent_errors_total{{component=\"remote_write\"}})",
                settings.url
            ));
        }
    };
    let mut backoff = FIRST_BACKOFF;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut finishing: Option<tokio::time::Instant> = None;
    loop {
        if finishing.is_none() {
            let wait_retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = now.notified() => {
                    pending.push_back(Bytes::from(encode(&(source.gather)(), &settings.labels, SystemTime::now())));
                }
                _ = wait_retry => {}
                _ = stop.cancelled() => {
                    pending.push_back(Bytes::from(encode(&(source.gather)(), &settings.labels, SystemTime::now())));
                    finishing = Some(tokio::time::Instant::now() + FINAL_FLUSH);
                }
            }
        }
        while pending.len() > MAX_PENDING {
            pending.pop_front();
            trouble(
                &mut delivery,
                "lost",
                "the receiver fell behind; the oldest batch was dropped",
            );
        }
        if retry_at.is_some_and(|t| tokio::time::Instant::now() < t) && finishing.is_none() {
            continue;
        }
        retry_at = None;
        while let Some(batch) = pending.front().cloned() {
            match post(&settings, batch).await {
                Answer::Accepted => {
                    pending.pop_front();
                    delivery.sent += 1;
                    backoff = FIRST_BACKOFF;
                }
                Answer::Refused(why) => {
                    pending.pop_front();
                    trouble(&mut delivery, "rejected", &why);
                }
                Answer::Failed(why) => {
                    trouble(&mut delivery, "retried", &why);
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    break;
                }
            }
        }
        if let Some(deadline) = finishing {
            if pending.is_empty() {
                return delivery;
            }
            // A failed attempt set `retry_at`: wait for it, unless that is past the deadline.
            let at = retry_at.unwrap_or_else(tokio::time::Instant::now);
            if at >= deadline {
                for _ in 0..pending.len() {
                    trouble(
                        &mut delivery,
                        "lost",
                        "the receiver did not take the last batches in time",
                    );
                }
                return delivery;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn series_are_encoded_as_prometheus_decodes_them() {
        let registry = prometheus::Registry::new();
        let c =
            prometheus::IntCounterVec::new(prometheus::Opts::new("a_total", "a"), &["x"]).unwrap();
        c.with_label_values(&["1"]).inc_by(3);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("h_seconds", "h").buckets(vec![0.1, 1.0]),
        )
        .unwrap();
        h.observe(0.5);
        registry.register(Box::new(c)).unwrap();
        registry.register(Box::new(h)).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let body = encode(
            &registry.gather(),
            &[("job".into(), "j".into()), ("x".into(), "kept".into())],
            at,
        );
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = prompb::WriteRequest::decode(raw.as_slice()).unwrap();
        let names: Vec<String> = request
            .timeseries
            .iter()
            .map(|t| {
                t.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            [
                "__name__=a_total,job=j,x=1",
                "__name__=h_seconds_bucket,job=j,le=0.1,x=kept",
                "__name__=h_seconds_bucket,job=j,le=1,x=kept",
                "__name__=h_seconds_bucket,job=j,le=+Inf,x=kept",
                "__name__=h_seconds_sum,job=j,x=kept",
                "__name__=h_seconds_count,job=j,x=kept",
            ]
        );
        assert_eq!(request.timeseries[0].samples[0].value, 3.0);
        assert_eq!(
            request.timeseries[0].samples[0].timestamp,
            1_700_000_000_123
        );
        assert_eq!(request.timeseries[2].samples[0].value, 1.0);
        assert_eq!(request.timeseries[1].samples[0].value, 0.0);
    }

    #[test]
    fn bad_settings_name_the_flag() {
        for (url, headers, want) in [
            ("ftp://x/y", vec![], "http and https"),
            (
                "http://x:9090/api/v1/write",
                vec!["nope".to_string()],
                "header `nope`: write NAME=VALUE",
            ),
            (
                "http://x:9090/api/v1/write",
                vec!["a b=c".to_string()],
                "not a header name",
            ),
        ] {
            let e = Settings::new(url, &headers, None, None).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
        let e = Settings::new(
            "http://x/y",
            &[],
            Some(Path::new("/nonexistent/token")),
            None,
        )
        .unwrap_err();
        assert!(e.contains("bearer token file"), "{e}");
        let ok = Settings::new("https://[::1]/api/v1/write", &[], None, None).unwrap();
        assert_eq!(ok.address.to_string(), "[::1]:443");
    }
}
