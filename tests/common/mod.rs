//! Shared helpers for integration tests: the loadagent binary, scenario files in temporary
//! folders, and gRPC servers started as child processes on ports the OS picks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadagent")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A valid scenario against the embedded target, one line per key, that the bad- and
/// hostile-input tests spoil one key at a time (`GOOD_SCENARIO.replace("rate = 100", …)`).
pub const GOOD_SCENARIO: &str = r#"name = "x"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = { payload_size = 8 }
[load]
rate = 100
duration = "1s"
"#;

/// Writes `text` as a scenario file in `dir` and returns its path.
pub fn scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Runs loadagent with `args`, never hanging past two minutes.
pub fn loadagent(args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(bin()).args(args);
    cmd.output().expect("run loadagent")
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a scenario with `--out` and returns the parsed report.
pub fn run_report(dir: &Path, scenario: &Path) -> serde_json::Value {
    let out_path = dir.join("report.json");
    let out = loadagent(&[
        "run",
        "-q",
        scenario.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "run failed:\n{}", text(&out));
    let json = std::fs::read_to_string(&out_path).expect("report written");
    serde_json::from_str(&json).expect("report is JSON")
}

/// A child process that prints `<prefix> <port>` once listening.
pub struct Server {
    pub child: Child,
    pub port: u16,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Server {
    fn start(cmd: Command, prefix: &str) -> Self {
        Self::try_start(cmd, prefix)
            .unwrap_or_else(|| panic!("server exited before printing `{prefix}`"))
    }

    /// Starts a server; `None` when it exits before printing `prefix` (e.g. port in use).
    pub fn try_start(mut cmd: Command, prefix: &str) -> Option<Self> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("start server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let Some(line) = lines.next() else {
                let _ = child.wait();
                return None;
            };
            let line = line.expect("read server output");
            if let Some(rest) = line.strip_prefix(prefix) {
                let port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("port");
                break port;
            }
        };
        Some(Self { child, port, lines })
    }

    /// The Python grpcio echo server (tests/python/echo_server.py) with extra options.
    pub fn python(args: &[&str]) -> Self {
        Self::python_script(
            "echo_server.py",
            "import grpc, grpc_tools, grpc_health.v1, grpc_reflection.v1alpha",
            "grpcio",
            args,
        )
    }

    /// The grpcio echo server over TLS with a self-signed certificate for `localhost` that
    /// expires on 2030-01-01 (1,893,456,000 in Unix seconds), written in `dir`: the server
    /// and the certificate's path (the CA to trust).
    pub fn python_tls_until_2030(dir: &Path) -> (Self, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let server = Self::python(&[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ]);
        (server, cert_path)
    }

    /// The echo service over gRPC-Web: Python sonora under hypercorn
    /// (tests/python/web_server.py).
    pub fn python_web(args: &[&str]) -> Self {
        Self::python_script(
            "web_server.py",
            "import sonora.asgi, hypercorn.asyncio",
            "sonora and hypercorn",
            args,
        )
    }

    /// A server in tests/python, after checking its packages are installed (`imports`).
    fn python_script(script: &str, imports: &str, packages: &str, args: &[&str]) -> Self {
        let check = Command::new("python3")
            .args(["-c", imports])
            .status()
            .expect("python3 runs");
        assert!(
            check.success(),
            "Python {packages} missing: run tests/setup.sh (it installs tests/python/requirements.txt)"
        );
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/python").join(script)).args(args);
        Self::start(cmd, "PORT ")
    }

    /// A remote-write receiver in front of `upstream` that fails the first POSTs
    /// (tests/python/remote_write_proxy.py); GET /stats tells what came.
    pub fn remote_write_proxy(args: &[&str]) -> Self {
        Self::python_script(
            "remote_write_proxy.py",
            "import http.server",
            "(none)",
            args,
        )
    }

    /// gRPC's interop TestService on Python grpcio (tests/python/interop_server.py).
    pub fn python_interop() -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/python/interop_server.py"));
        Self::start(cmd, "PORT ")
    }

    /// gRPC's interop TestService on Node's @grpc/grpc-js (tests/node/interop_server.js).
    pub fn node_interop() -> Self {
        Self::node_interop_with(&[])
    }

    /// The same with server channel options: `("grpc.max_connection_age_ms", 1000)`.
    pub fn node_interop_with(options: &[(&str, u64)]) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/node/interop_server.js"));
        for (name, value) in options {
            cmd.arg("--option").arg(format!("{name}={value}"));
        }
        Self::start(cmd, "PORT ")
    }

    /// Node's HTTP/2 server answering every request in `mode` (tests/node/h2_server.js).
    pub fn node_h2(mode: &str) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/node/h2_server.js")).arg(mode);
        Self::start(cmd, "PORT ")
    }

    /// `loadagent target` as a child process.
    pub fn reference_target() -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(["target", "--listen", "127.0.0.1:0"]);
        Self::start(cmd, "listening on ")
    }

    /// Sends a command line to the server's stdin (the Python server's health switch).
    pub fn command(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write command");
        stdin.flush().expect("flush");
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits for a line the server prints (e.g. `FIRST`), or for `give_up` to say stop
    /// (checked between lines and every 100 ms), so a test fails instead of hanging.
    pub fn wait_for_line(&mut self, want: &str, mut give_up: impl FnMut() -> bool) {
        let (tx, rx) = std::sync::mpsc::channel();
        let want_owned = want.to_string();
        let lines = std::mem::replace(&mut self.lines, BufReader::new(empty_stdout()).lines());
        let reader = std::thread::spawn(move || {
            let mut lines = lines;
            let mut seen = false;
            for line in lines.by_ref() {
                if line.map(|l| l.trim() == want_owned).unwrap_or(false) {
                    seen = true;
                    break;
                }
            }
            let _ = tx.send(seen);
            lines
        });
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(true) => break,
                Ok(false) => panic!("server ended before printing {want}"),
                Err(_) if give_up() => panic!("gave up waiting for the server to print {want}"),
                Err(_) => {}
            }
        }
        self.lines = reader.join().expect("reader thread");
    }

    /// SIGTERMs the Python server and returns the JSON line it prints with its counts.
    pub fn stop_with_counts(mut self) -> serde_json::Value {
        terminate(&self.child);
        let mut last = None;
        for line in self.lines.by_ref() {
            let line = line.expect("read server output");
            if line.starts_with('{') {
                last = Some(line);
            }
        }
        let _ = self.child.wait();
        serde_json::from_str(&last.expect("server printed its counts")).expect("counts are JSON")
    }
}

/// A stdout that is already at its end, to stand in while the real one is lent out.
fn empty_stdout() -> ChildStdout {
    let mut child = Command::new("true")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run true");
    let out = child.stdout.take().expect("stdout");
    let _ = child.wait();
    out
}

pub fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `loadagent agent` as a child process, with `config` written as `agent.toml` in `dir`.
pub fn start_agent(dir: &Path, config: &str) -> Server {
    let path = scenario(dir, "agent.toml", config);
    let mut cmd = Command::new(bin());
    cmd.args([
        "agent",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    Server::try_start(cmd, "listening on ").expect("the agent starts")
}

/// A unary scenario against the Python echo server.
pub fn echo_scenario(address: &str, call_extra: &str, load: &str) -> String {
    format!(
        r#"
name = "echo"
kind = "unary"

[target]
address = "{address}"

[call]
method = "testing.echo.v1.Echo/Say"
{call_extra}

[load]
{load}
"#
    )
}

/// A unary scenario calling the reference target's `Bench/Unary` with a 2 s deadline.
pub fn bench_scenario(address: &str, data: &str, load: &str) -> String {
    format!(
        r#"
name = "bench"
kind = "unary"
[target]
address = "{address}"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = {data}
timeout = "2s"
[load]
{load}
"#
    )
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// `http_get`, with a failed connection or read as an error (a server still starting or
/// already stopping, polled by `eventually`).
pub fn try_http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    http_request(addr, path, &[]).map(|(status, _, body)| (status, body))
}

/// An HTTP/1.1 GET with these extra headers: (status code, response head, body — decoded
/// when it came chunked).
pub fn http_request(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read response: {e}"))?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((buf.as_str(), ""));
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = match chunked {
        true => dechunk(body)?,
        false => body.to_string(),
    };
    Ok((status, head.to_string(), body))
}

/// An HTTP/1.1 chunked body, decoded (a streamed answer such as `/metrics`).
fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| format!("a chunk without its size line: {rest:.40}"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| format!("a chunk of {size} bytes cut short"))?;
        body.push_str(chunk);
        rest = after[size..]
            .strip_prefix("\r\n")
            .ok_or("a chunk not followed by CRLF")?;
    }
}

/// Polls `check` every 100 ms until it holds or `secs` pass; the check's last text on failure.
pub fn eventually(secs: u64, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if std::time::Instant::now() > deadline => panic!("not within {secs}s: {why}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

pub fn num(v: &serde_json::Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in the report: {cur}"))
}

/// Starts `loadagent run -q SCENARIO --out OUT` in the background (stdout discarded, stderr
/// kept for `wait_with_output`), for tests that act on a server while the run goes on.
pub fn spawn_run(scenario: &Path, out: &Path) -> Child {
    Command::new(bin())
        .args([
            "run",
            "-q",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a run started by `spawn_run`, asserts it exited 0 and returns its report.
pub fn finish_run(run: Child, out: &Path) -> serde_json::Value {
    let done = run.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `loadagent merge INPUTS… --out OUT`, asserted to exit 0; the merged report.
pub fn merge_reports(inputs: &[PathBuf], out: &Path) -> serde_json::Value {
    let mut args = vec!["merge"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    let done = loadagent(&args);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

impl Server {
    /// Starts `loadagent target` on `port` again, retrying briefly while the old one
    /// releases it.
    pub fn reference_target_on(port: u16) -> Self {
        for _ in 0..50 {
            let mut cmd = Command::new(bin());
            cmd.args(["target", "--listen", &format!("127.0.0.1:{port}")]);
            if let Some(s) = Self::try_start(cmd, "listening on ") {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the target could not listen on its old port again");
    }
}

/// A CA and certificates it signed, written as PEM files in a folder: `server` (localhost,
/// 127.0.0.1), `expired` and `client`, each NAME.pem with NAME.key, and ca.pem.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "loadagent test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, sans: Vec<String>, expired: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            "server",
            vec!["localhost".into(), "127.0.0.1".into()],
            false,
        );
        leaf("expired", vec!["localhost".into()], true);
        leaf("client", vec!["client.example".into()], false);
        // A fleet's certificate: its DNS name only, no IP (verified only by that name).
        leaf("fleet", vec!["pool.fleet.test".into()], false);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A loopback TCP port nothing listens on, for a server a test starts. It is taken below the
/// kernel's ephemeral range (`ip_local_port_range`) when there is room: a port from that range
/// can be the source port the kernel picks for a client's connect to it, and a socket connected
/// to itself makes a readiness check "succeed" with no server there (and keeps the server from
/// binding) — CI read that as "refused" once.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    if low > 12_000 {
        for _ in 0..200 {
            let port = rand::random_range(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first sample in a /metrics text that matches `series`
/// (`name{k="v",…}`): the same name, and at least those labels (values without `,` or `"`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    fn split(s: &str) -> (&str, Vec<&str>) {
        match s.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.trim_end_matches('}')
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            None => (s, Vec::new()),
        }
    }
    let (name, wanted) = split(series);
    metrics.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labels) = split(series);
        (n == name && wanted.iter().all(|w| labels.contains(w)))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Percent-encodes a PromQL expression for a query URL.
pub fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus (Debian's package) with `config` (prometheus.yml's text), its data in
/// `dir`, its API on a free loopback port; killed on drop.
pub struct Prometheus {
    child: Child,
    pub api: String,
}

impl Prometheus {
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_with(dir, config, &[])
    }

    /// With extra flags (`--web.enable-remote-write-receiver`).
    pub fn start_with(dir: &Path, config: &str, flags: &[&str]) -> Self {
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package; tests/setup.sh installs it)");
        Self {
            child,
            api: format!("127.0.0.1:{port}"),
        }
    }

    /// The result of an instant query; an error while Prometheus is not up yet or the
    /// expression does not evaluate.
    pub fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        if std::net::TcpStream::connect(&self.api).is_err() {
            return Err("prometheus is not listening yet".into());
        }
        // A reset while Prometheus starts is "not up yet", as a refused connection is.
        let (code, body) = try_http_get(
            &self.api,
            &format!("/api/v1/query?query={}", url_encode(expr)),
        )?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{code}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("`{expr}` does not evaluate: {body}"));
        }
        Ok(v["data"]["result"].clone())
    }
}

impl Prometheus {
    /// The value of the first series an instant query gives; an error while there is none.
    pub fn value(&self, expr: &str) -> Result<f64, String> {
        let r = self.query(expr)?;
        let v = r
            .as_array()
            .and_then(|a| a.first())
            .ok_or(format!("`{expr}`: no result yet"))?;
        v["value"][1]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or(format!("`{expr}`: not a number: {v}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts `promtool check metrics` accepts an exposition.
pub fn assert_promtool_accepts(exposition: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/setup.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A fleet's backends: one grpcio echo server per address (127.0.0.2, …), all on one port
/// (A records carry no port).
pub fn backends(hosts: &[&str]) -> (u16, Vec<Server>) {
    backends_with(hosts, &[])
}

pub fn backends_with(hosts: &[&str], extra: &[&str]) -> (u16, Vec<Server>) {
    for _ in 0..20 {
        let port = free_port();
        let free = hosts
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok());
        if !free {
            continue;
        }
        let servers = hosts
            .iter()
            .map(|h| {
                let port = port.to_string();
                let mut args = vec!["--host", h, "--port", &port];
                args.extend_from_slice(extra);
                Server::python(&args)
            })
            .collect();
        return (port, servers);
    }
    panic!("no port free on every backend address");
}

/// dnsmasq (Debian's dnsmasq-base) on a loopback UDP/TCP port, answering only from a hosts
/// file it re-reads on SIGHUP (`set_hosts`) and from the SRV records it was started with:
/// the DNS server of the fleet tests. Killed when dropped.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
    hosts: PathBuf,
}

impl Dnsmasq {
    /// Serves `hosts` (lines `IP NAME`) and each SRV record `(name, target, port)`.
    pub fn start(dir: &Path, hosts: &str, srv: &[(&str, &str, u16)]) -> Self {
        // Debian puts it in /usr/sbin, which a non-root PATH may lack.
        let program = if Path::new("/usr/sbin/dnsmasq").exists() {
            "/usr/sbin/dnsmasq"
        } else {
            "dnsmasq"
        };
        let found = Command::new(program).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "dnsmasq is missing: run tests/setup.sh (it installs Debian's dnsmasq-base)"
        );
        let hosts_file = dir.join("fleet.hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
        for _ in 0..20 {
            let port = free_udp_port();
            let mut cmd = Command::new(program);
            cmd.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--log-facility=/dev/null",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            // Root would drop to `nobody`, who cannot read the test's private directory.
            .arg(format!(
                "--user={}",
                user.clone().unwrap_or_else(|| "root".to_string())
            ));
            for (name, target, p) in srv {
                cmd.arg(format!("--srv-host={name},{target},{p}"));
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dnsmasq");
            // Up when it answers a TCP connection on its port; gone when the port was taken.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        hosts: hosts_file,
                    };
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "dnsmasq did not start listening on 127.0.0.1:{port}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        panic!("dnsmasq could not get a port in 20 attempts");
    }

    /// `127.0.0.1:PORT`, as a `dns://` name's server.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the hosts file and makes dnsmasq re-read it (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// tests/python/echo.proto, the echo service's types.
pub fn echo_proto() -> String {
    repo()
        .join("tests/python/echo.proto")
        .to_string_lossy()
        .into_owned()
}

/// A scenario calling the echo service (`Say`, or `Subscribe` for a server stream);
/// `target_extra` goes in [target] (e.g. `protocol = "grpc-web"`), `call_extra` in [call].
pub fn web_scenario(
    address: &str,
    kind: &str,
    target_extra: &str,
    call_extra: &str,
    load: &str,
) -> String {
    let method = if kind == "server_stream" {
        "Subscribe"
    } else {
        "Say"
    };
    format!(
        r#"
name = "web"
kind = "{kind}"

[target]
address = "{address}"
{target_extra}

[call]
method = "testing.echo.v1.Echo/{method}"
proto = ["{proto}"]
{call_extra}

[load]
{load}
"#,
        proto = echo_proto()
    )
}
