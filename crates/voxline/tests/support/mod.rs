//! Test harness: starts the real `voxline` binary on free loopback ports
//! and runs real SIPp scenarios against it.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a test harness: a failed set-up step fails the test

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running node started from the real binary.
pub struct Node {
    child: Option<Child>,
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub ng: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_voxline")
}

impl Node {
    /// Writes `config` (with `@DATA@` replaced by a fresh data directory)
    /// and starts a node on it. Listeners should use port 0; the bound
    /// addresses are read from the node's JSON log.
    pub fn start(config: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Node {
        let data = dir.path().join("data");
        let text = config.replace("@DATA@", &data.display().to_string());
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).expect("write config");
        let mut node = Node {
            child: None,
            sip_udp: None,
            sip_tcp: None,
            admin: None,
            ng: None,
            dir,
            config: path,
            log: Default::default(),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("VOXLINE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn voxline");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<String>();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        self.sip_udp = None;
        self.sip_tcp = None;
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => l,
                Err(_) => panic!("node did not start; log:\n{}", self.log_text()),
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let msg = v["fields"]["message"].as_str().unwrap_or("");
            let addr = v["fields"]["address"].as_str().and_then(|a| a.parse().ok());
            match msg {
                "SIP listener ready" => match v["fields"]["transport"].as_str() {
                    Some("udp") => self.sip_udp = addr,
                    Some("tcp") => self.sip_tcp = addr,
                    _ => {}
                },
                "admin listener ready" => self.admin = addr,
                "ng listener ready" => self.ng = addr,
                "node running" => break,
                _ => {}
            }
            if v["level"] == "ERROR" {
                panic!("node failed to start: {line}");
            }
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory of the node.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node again on the same config and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// GET on the admin API; panics on failure.
    pub fn admin_get(&self, path: &str) -> String {
        let admin = self.admin.expect("admin listener");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(voxline_admin::client::request(admin, "GET", path, None))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The value of a Prometheus counter/gauge line (sum over label sets
    /// that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        self.admin_get("/metrics")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A standard config: the given roles, all listeners on free ports.
pub fn config(roles: &str, extra: &str) -> String {
    // A proxy without a relay of its own and without a relay set does not
    // anchor media (the config refuses to leave that implicit).
    let media = if roles.contains("proxy") && !roles.contains("relay") && !extra.contains("[media]")
    {
        "[media]\nenabled = false\n"
    } else {
        ""
    };
    format!(
        r#"
[node]
roles = [{roles}]
data_dir = "@DATA@"
[log]
format = "json"
[sip]
domains = ["localhost", "127.0.0.1"]
[[sip.listen]]
transport = "udp"
address = "127.0.0.1:0"
[[sip.listen]]
transport = "tcp"
address = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[relay]
ng_udp = "127.0.0.1:0"
# Below Linux's ephemeral range (32768-60999): ports the tests take with
# free_udp_port() (SIPp's media ports, say) never collide with the relays'.
port_min = 20000
port_max = 29999
# Overload control stays on, with the queue threshold these tests ran with
# before the default became 50 ms: debug builds, several tests at once on
# two cores, so a node can be descheduled for tens of milliseconds, and
# those tests are not about load shedding (overload_storm is).
[overload]
max_queue_delay_ms = 100
{media}{extra}
"#
    )
}

/// Path of a scenario in `testdata/sipp`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sipp")
        .join(name)
}

/// Result of one SIPp run.
pub struct SippRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs SIPp to completion (bounded by `-timeout`) with `args`, in `dir`
/// (where SIPp writes its trace files).
pub fn sipp(dir: &Path, args: &[&str]) -> SippRun {
    SippProcess::spawn(dir, args).wait()
}

/// A SIPp process running in the background (a UAS, say).
pub struct SippProcess {
    child: Option<Child>,
}

impl SippProcess {
    /// Starts SIPp with `args` in `dir`.
    pub fn spawn(dir: &Path, args: &[&str]) -> SippProcess {
        let child = Command::new("sipp")
            .current_dir(dir)
            .args(args)
            .args(["-timeout", "60", "-nostdin", "-trace_err"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp must be installed (Debian package sip-tester)");
        SippProcess { child: Some(child) }
    }

    /// Waits for SIPp to end by itself; SIPp's own -timeout does not fire
    /// in every state, so it is killed after 90 s and reported as failed.
    pub fn wait(mut self) -> SippRun {
        let child = self.child.take().expect("running");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(Ok(out)) => SippRun {
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            _ => {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                SippRun {
                    success: false,
                    stdout: String::new(),
                    stderr: "sipp did not finish within 90 s and was killed".into(),
                }
            }
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Adds subscribers straight into the node's SQLite database.
pub fn provision(node: &Node, users: &[(&str, &str)]) {
    let url = format!("sqlite://{}", node.data_dir().join("voxline.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = voxline_auth::SubscriberStore::open(&url)
            .await
            .expect("open subscriber db");
        for (user, pass) in users {
            let (u, d) = user.split_once('@').expect("user@domain");
            store.add(u, d, pass).await.expect("add subscriber");
        }
        store.close().await;
    });
}

/// Writes an injection file and returns its path.
pub fn injection(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::from("SEQUENTIAL\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write injection file");
    path
}

/// Registers `user` (password `pass`) with SIPp from local port `port`,
/// so that a UAS started on that port receives the user's calls.
pub fn register_from_port(node: &Node, user: &str, pass: &str, port: u16) {
    let (u, d) = user.split_once('@').unwrap();
    let inf = injection(
        node.dir.path(),
        &format!("reg-{u}-{port}.csv"),
        &[format!(
            "{u};{d};[authentication username={u} password={pass}]"
        )],
    );
    let target = node.sip_udp.unwrap().to_string();
    let sf = scenario("register_auth.xml");
    let port = port.to_string();
    let run = sipp(
        node.dir.path(),
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            inf.to_str().unwrap(),
            &target,
            "-m",
            "1",
            "-set",
            "expires",
            "600",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ],
    );
    assert!(
        run.success,
        "registering {user} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
}

// ----- edge and partitioned registrars (tests/edge_*.rs) ------------------

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory on tmpfs when there is one (SQLite commits without disk
/// flushes), else the usual temporary directory.
pub fn fast_tempdir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().expect("tempdir"),
    }
}

/// Provisions `users` (`user@domain`, password) into the SQLite file `db`.
pub fn provision_db(db: &Path, users: impl IntoIterator<Item = (String, String)>) {
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = voxline_auth::SubscriberStore::open(&url)
            .await
            .expect("open subscriber db");
        for (user, pass) in users {
            let (u, d) = user.split_once('@').expect("user@domain");
            store.add(u, d, &pass).await.expect("add subscriber");
        }
        store.close().await;
    });
}

/// The `[partitions]` section of the edge tests: `count` partitions spread
/// over reg1..reg3 in thirds, each backed up by the next node.
pub fn partitions_toml(count: u16) -> String {
    let third = count / 3;
    let ranges = [
        (0, third - 1, "reg1", "reg2"),
        (third, 2 * third - 1, "reg2", "reg3"),
        (2 * third, count - 1, "reg3", "reg1"),
    ];
    let mut s = format!("[partitions]\ncount = {count}\n");
    for (a, b, p, k) in ranges {
        s.push_str(&format!(
            "[[partitions.assign]]\npartitions = \"{a}-{b}\"\nprimary = \"{p}\"\nbackup = \"{k}\"\n"
        ));
    }
    s
}

/// A registrar/proxy node `name` on `ip` with its location in Redis at
/// `redis` and its subscribers in the shared SQLite file `db`.
pub fn registrar_node_config(name: &str, ip: &str, redis: &str, db: &Path, extra: &str) -> String {
    format!(
        r#"
[node]
name = "{name}"
roles = ["registrar", "proxy"]
data_dir = "@DATA@"
[log]
format = "json"
[sip]
domains = ["localhost"]
[[sip.listen]]
transport = "udp"
address = "{ip}:0"
[registrar]
authenticate = true
[proxy]
authenticate = true
dns = false
timer_c_secs = 5
[media]
enabled = false
# These tests are about routing and failover, on a busy machine: no
# load shedding (its own tests cover it).
[overload]
enabled = false
[auth]
secret = "edge-test-cluster-secret-0123456789"
algorithms = ["MD5"]
db_url = "sqlite://{db}"
cache_ttl_secs = 60
[location]
backend = "{redis}"
redis_timeout_ms = 300
[admin]
listen = "{ip}:0"
{extra}
"#,
        db = db.display()
    )
}

/// An edge on `ip` in front of `destinations` (name, SIP address).
pub fn edge_node_config(ip: &str, destinations: &[(&str, SocketAddr)], extra: &str) -> String {
    let mut d = String::new();
    for (name, addr) in destinations {
        d.push_str(&format!(
            "[[dispatcher.sets.destinations]]\nuri = \"sip:{addr}\"\nname = \"{name}\"\n"
        ));
    }
    format!(
        r#"
[node]
name = "edge"
roles = ["edge"]
data_dir = "@DATA@"
[log]
format = "json"
[sip]
domains = []
[[sip.listen]]
transport = "udp"
address = "{ip}:0"
[overload]
enabled = false
[edge]
set = "registrars"
failover_timeout_ms = 500
[dispatcher]
probe_interval_ms = 300
probe_timeout_ms = 250
down_threshold = 2
up_threshold = 2
[[dispatcher.sets]]
name = "registrars"
algorithm = "hash-aor"
{d}
[admin]
listen = "{ip}:0"
{extra}
"#
    )
}

/// A redis-server with an append-only file fsynced on every write, so a
/// `kill -9` loses nothing it acknowledged.
pub struct AofRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl AofRedis {
    /// Starts it on a free loopback port.
    pub fn start() -> AofRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = AofRedis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", "", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(20), || {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "PING"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
            }),
            "redis-server did not start"
        );
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data (replaying the AOF).
    pub fn start_again(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for AofRedis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One run of the project's load generator, in-process.
pub fn loadgen(
    scenario: voxline_loadgen::uac::Scenario,
    target: SocketAddr,
    configure: impl FnOnce(&mut voxline_loadgen::engine::RunConfig),
) -> voxline_loadgen::stats::Report {
    let mut cfg = voxline_loadgen::engine::RunConfig::new(scenario, target);
    cfg.password = Some("{user}".into());
    cfg.drain = Duration::from_secs(10);
    configure(&mut cfg);
    voxline_loadgen::engine::run(&cfg).expect("loadgen run")
}

/// Flows that ended well, in the window and while draining.
pub fn completed(r: &voxline_loadgen::stats::Report) -> u64 {
    r.flows_completed + r.completed_in_drain
}

/// Registers `user` (password = user name) through `target` with SIPp from
/// 127.0.0.1:`port`, so that a UAS later started on that port gets its calls.
pub fn register_through(dir: &Path, target: SocketAddr, user: &str, port: u16) {
    let (u, d) = user.split_once('@').unwrap();
    let inf = injection(
        dir,
        &format!("reg-{u}-{port}.csv"),
        &[format!(
            "{u};{d};[authentication username={u} password={u}]"
        )],
    );
    let sf = scenario("register_auth.xml");
    let run = sipp(
        dir,
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            inf.to_str().unwrap(),
            &target.to_string(),
            "-m",
            "1",
            "-set",
            "expires",
            "600",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ],
    );
    assert!(
        run.success,
        "registering {user} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
}

/// One SIPp call (uac_call.xml, with digest) from `caller` to `callee`
/// through `target`; true when it succeeded.
pub fn call_through(dir: &Path, target: SocketAddr, caller: &str, callee: &str) -> SippRun {
    let (cu, d) = caller.split_once('@').unwrap();
    let (eu, _) = callee.split_once('@').unwrap();
    let inf = injection(
        dir,
        &format!("call-{cu}-{eu}-{}.csv", free_udp_port()),
        &[format!(
            "{cu};{eu};{d};[authentication username={cu} password={cu}]"
        )],
    );
    let sf = scenario("uac_call.xml");
    let port = free_udp_port().to_string();
    sipp(
        dir,
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            inf.to_str().unwrap(),
            &target.to_string(),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            "50",
        ],
    )
}

/// The final response to a REGISTER with digest auth (password = user
/// name) sent from a plain socket: (status, Retry-After).
pub fn register_once(edge: SocketAddr, name: &str) -> (u16, Option<String>) {
    let (status, retry, _) = register_raw(edge, name, None);
    (status, retry)
}

/// [`register_once`] with the Contact host given (a private address makes
/// the client look NATed); returns the client's socket too.
pub fn register_raw(
    edge: SocketAddr,
    name: &str,
    contact_host: Option<&str>,
) -> (u16, Option<String>, std::net::UdpSocket) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let call_id = format!("{name}-{}", local.port());
    let contact = match contact_host {
        Some(h) => format!("{h}:{}", local.port()),
        None => local.to_string(),
    };
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{name}{cseq}x{};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{name}@localhost>;tag={cseq}\r\nTo: <sip:{name}@localhost>\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{name}@{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
            local.port()
        )
    };
    let final_response = |sock: &std::net::UdpSocket| -> Option<Response> {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).ok()?;
            let r = Response::parse(&String::from_utf8_lossy(&buf[..n]))?;
            if r.status >= 200 {
                return Some(r);
            }
        }
    };
    sock.send_to(request(1, "").as_bytes(), edge).unwrap();
    let Some(challenge) = final_response(&sock) else {
        return (408, None, sock);
    };
    if challenge.status != 401 {
        return (challenge.status, None, sock);
    }
    let ch = voxline_auth::DigestChallenge::parse(&challenge.header("WWW-Authenticate").unwrap())
        .unwrap();
    let auth = ch.authorize(
        name,
        name,
        &voxline_auth::ClientRequest {
            method: "REGISTER",
            uri: "sip:localhost",
            nc: 1,
            cnonce: "0a4f113b",
        },
    );
    sock.send_to(
        request(2, &format!("Authorization: {auth}\r\n")).as_bytes(),
        edge,
    )
    .unwrap();
    let (status, retry) = match final_response(&sock) {
        Some(r) => (r.status, r.header("Retry-After")),
        None => (408, None),
    };
    (status, retry, sock)
}

/// The response a UAS gives to `request` (its text as received): the
/// status line, the Via, From, Call-ID, CSeq and Record-Route headers
/// copied, the To header with `to_tag` added, then `extra` header lines
/// (each ending in CRLF) and an empty body.
pub fn uas_response(request: &str, status_line: &str, to_tag: &str, extra: &str) -> String {
    let mut out = format!("{status_line}\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" | "record-route" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                out.push_str(&format!(";tag={to_tag}\r\n"));
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Just enough of a response for this test.
pub struct Response {
    pub status: u16,
    pub text: String,
}

impl Response {
    pub fn parse(text: &str) -> Option<Response> {
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response {
            status,
            text: text.to_owned(),
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

// ----- two active-active sites (tests/sites_*.rs) ---------------------------

/// A TCP address on `ip` that was free a moment ago.
pub fn free_tcp_addr(ip: &str) -> SocketAddr {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The secret of the test sites' replication mesh.
pub const SITES_SECRET: &str = "two-sites-test-replication-secret";

/// The `[replication]` section of site `site` (listener `listen`) with one
/// peer site `peer` at `peer_addr`.
pub fn replication_toml(
    site: &str,
    listen: SocketAddr,
    peer: &str,
    peer_addr: SocketAddr,
) -> String {
    format!(
        r#"
[replication]
site = "{site}"
listen = "{listen}"
secret = "{SITES_SECRET}"
retry_min_ms = 50
retry_max_ms = 500
heartbeat_ms = 250
request_timeout_ms = 1000
[[replication.peers]]
name = "{peer}"
addresses = ["{peer_addr}"]
"#
    )
}

/// A binding as the site listings compare it: (contact, Call-ID, CSeq).
pub type BindingId = (String, String, u64);

/// One complete site on its own loopback addresses: Redis, a
/// registrar/proxy node with its media relay that replicates location to
/// the peer site, and an edge in front of it. Subscribers (password = user name) in the site's own
/// SQLite file.
pub struct Site {
    pub name: String,
    pub redis: voxline_location::testutil::RedisServer,
    pub reg: Node,
    pub edge: Node,
    pub replication: SocketAddr,
    pub db_dir: tempfile::TempDir,
}

impl Site {
    /// The public SIP address of the site (its edge).
    pub fn edge_addr(&self) -> SocketAddr {
        self.edge.sip_udp.unwrap()
    }

    /// `kill -9` every process of the site: edge, registrar node, Redis.
    pub fn kill9(&mut self) {
        self.edge.kill9();
        self.reg.kill9();
        self.redis.stop();
    }

    /// POST a JSON body to the registrar node's admin API.
    pub fn admin_post(&self, path: &str, body: &str) -> String {
        let admin = self.reg.admin.expect("admin listener");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(voxline_admin::client::request(
            admin,
            "POST",
            path,
            Some(body),
        ))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET /api/v1/replication` of the registrar node.
    pub fn replication_status(&self) -> serde_json::Value {
        serde_json::from_str(&self.reg.admin_get("/api/v1/replication")).unwrap()
    }

    /// The live bindings of `aor` (admin API of the registrar node).
    pub fn bindings_of(&self, aor: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(
            &self
                .reg
                .admin_get(&format!("/api/v1/registrations?aor={aor}")),
        )
        .unwrap();
        v["bindings"].as_array().cloned().unwrap_or_default()
    }

    /// Every AOR with its bindings as (contact, Call-ID, CSeq), sorted: the
    /// site's whole location, paged through the admin API.
    pub fn listing(&self) -> Vec<(String, Vec<BindingId>)> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/registrations?limit=1000&cursor={c}"),
                None => "/api/v1/registrations?limit=1000".to_owned(),
            };
            let v: serde_json::Value = serde_json::from_str(&self.reg.admin_get(&path)).unwrap();
            for r in v["registrations"].as_array().unwrap() {
                let mut bs: Vec<BindingId> = r["bindings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| {
                        (
                            b["contact"].as_str().unwrap().to_owned(),
                            b["call_id"].as_str().unwrap().to_owned(),
                            b["cseq"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                bs.sort();
                out.push((r["aor"].as_str().unwrap().to_owned(), bs));
            }
            match v["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => break,
            }
        }
        out.sort();
        out
    }
}

fn site_reg_config(
    name: &str,
    ip: &str,
    redis: &str,
    db: &Path,
    replication: &str,
    relay_ports: (u16, u16),
) -> String {
    // The site's node also runs its relay: calls are media-anchored.
    let relay = format!(
        "[relay]\nng_udp = \"{ip}:0\"\nport_min = {}\nport_max = {}\n[[relay.interfaces]]\nname = \"default\"\naddress = \"{ip}\"\n",
        relay_ports.0, relay_ports.1
    );
    registrar_node_config(name, ip, redis, db, &format!("{replication}\n{relay}"))
        .replace(
            "roles = [\"registrar\", \"proxy\"]",
            "roles = [\"registrar\", \"proxy\", \"relay\"]",
        )
        // Short registrations for the failover test's phones.
        .replace("[registrar]\n", "[registrar]\nmin_expires = 10\n")
        // Media anchored on the site's own relay.
        .replace("[media]\nenabled = false\n", "")
}

fn start_site(
    name: &str,
    reg_ip: &str,
    edge_ip: &str,
    users: &[String],
    replication: &str,
    relay_ports: (u16, u16),
) -> Site {
    let redis = voxline_location::testutil::RedisServer::start().expect("redis-server");
    let db_dir = fast_tempdir();
    let db = db_dir.path().join("subscribers.db");
    provision_db(
        &db,
        users.iter().map(|u| {
            let name = u.split('@').next().unwrap().to_owned();
            (u.clone(), name)
        }),
    );
    let reg = Node::start(&site_reg_config(
        &format!("reg-{name}"),
        reg_ip,
        &redis.url(),
        &db,
        replication,
        relay_ports,
    ));
    let edge = Node::start(&edge_node_config(
        edge_ip,
        &[(&format!("reg-{name}"), reg.sip_udp.unwrap())],
        "",
    ));
    let replication = replication
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.trim_end_matches('"').parse().ok())
        .expect("replication listen address");
    Site {
        name: name.to_owned(),
        redis,
        reg,
        edge,
        replication,
        db_dir,
    }
}

/// Sites "a" (edge 127.0.0.20, registrar 127.0.0.21) and "b" (edge
/// 127.0.0.30, registrar 127.0.0.31) replicating to each other, each with
/// `users` provisioned (password = user name).
pub fn two_sites(users: &[String]) -> (Site, Site) {
    let a_repl = free_tcp_addr("127.0.0.21");
    let b_repl = free_tcp_addr("127.0.0.31");
    let a = start_site(
        "a",
        "127.0.0.21",
        "127.0.0.20",
        users,
        &replication_toml("a", a_repl, "b", b_repl),
        (40000, 40999),
    );
    let b = start_site(
        "b",
        "127.0.0.31",
        "127.0.0.30",
        users,
        &replication_toml("b", b_repl, "a", a_repl),
        (41000, 41999),
    );
    (a, b)
}

/// A SIPp scenario written next to the test's other files.
fn write_scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// SIPp prints numeric variables as `2.000000`; this turns `cseq` into the
/// integer string `cs` and counts on.
const NEXT_CSEQ: &str = r#"<nop><action><assignstr assign_to="cstr" value="[$cseq]"/><ereg regexp="^[0-9]+" search_in="var" variable="cstr" assign_to="cs"/><add assign_to="cseq" value="1"/></action></nop>"#;

fn phone_scenario(alt: SocketAddr, refresh_ms: u64, expires: u32) -> String {
    // No SIPp retransmissions: after a timeout jump SIPp would keep
    // retransmitting the old request instead of sending the next one.
    let register = |auth: &str| {
        format!(
            r#"  <send>
    <![CDATA[

      REGISTER sip:[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]-[$cs];rport
      From: <sip:[field0]@[field1]>;tag=[pid]r[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: [$cs] REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      {auth}
      Expires: {expires}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"#
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A phone: registers (digest), refreshes every {refresh_ms} ms, and when its
     registrar does not answer within 1 s registers with the other site
     ({alt}) instead. Calls are answered by the out-of-call scenario. -->
<scenario name="phone with failover">
  <nop><action><assign assign_to="cseq" value="1"/></action></nop>
  <nop next="1"/>
  <label id="9"/>
  <nop><action><setdest host="{host}" port="{port}" protocol="udp"/><log message="[field0] fails over to {alt}"/></action></nop>
  <label id="1"/>
  {NEXT_CSEQ}
{first}
  <recv response="100" optional="true" timeout="1000" ontimeout="9"/>
  <recv response="401" auth="true" timeout="1000" ontimeout="9"/>
  {NEXT_CSEQ}
{second}
  <recv response="100" optional="true" timeout="1000" ontimeout="9"/>
  <recv response="200" timeout="1000" ontimeout="9"/>
  <nop><action><log message="[field0] registered"/></action></nop>
  <pause milliseconds="{refresh_ms}"/>
  <nop next="1"/>
</scenario>
"#,
        host = alt.ip(),
        port = alt.port(),
        first = register(""),
        second = register("[field2]"),
    )
}

/// A bank of SIPp phones on one `ip:port`: registers `users` (password =
/// user name) with `primary`, refreshes every `refresh_ms`, fails over to
/// `alt` when a REGISTER goes unanswered for 1 s, and answers calls to
/// any of them (`uas_answer.xml` as SIPp's out-of-call scenario).
pub struct Phones {
    child: Option<Child>,
    pub ip: String,
    pub port: u16,
    dir: PathBuf,
}

impl Phones {
    pub fn start(
        dir: &Path,
        ip: &str,
        users: &[String],
        primary: SocketAddr,
        alt: SocketAddr,
        refresh_ms: u64,
    ) -> Phones {
        let port = std::net::UdpSocket::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = dir.join(format!("phones-{ip}-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let sf = write_scenario(&dir, "phone.xml", &phone_scenario(alt, refresh_ms, 60));
        let rows: Vec<String> = users
            .iter()
            .map(|u| {
                let (n, d) = u.split_once('@').unwrap();
                format!("{n};{d};[authentication username={n} password={n}]")
            })
            .collect();
        let inf = injection(&dir, "phones.csv", &rows);
        let ooc = scenario("uas_answer.xml");
        let n = users.len().to_string();
        let child = Command::new("sipp")
            .current_dir(&dir)
            .args(["-sf", sf.to_str().unwrap(), "-inf", inf.to_str().unwrap()])
            .args(["-oocsf", ooc.to_str().unwrap()])
            .arg(primary.to_string())
            .args(["-i", ip, "-p", &port.to_string()])
            .args(["-m", &n, "-l", &n, "-r", "50"])
            .args(["-nd", "-nostdin", "-trace_err", "-trace_logs"])
            .args(["-timeout", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp must be installed (Debian package sip-tester)");
        Phones {
            child: Some(child),
            ip: ip.to_owned(),
            port,
            dir,
        }
    }

    /// The phones' SIPp log (registrations, failovers) and errors.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with("_logs.log") || name.ends_with("_errors.log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// Times a line containing `needle` was logged.
    pub fn logged(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }
}

impl Drop for Phones {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn caller_scenario(alt: SocketAddr, answer_ms: u64) -> String {
    // The first INVITE is not retransmitted by SIPp (a timeout jump would
    // leave the retransmission running instead of sending to `alt`).
    let invite = |cseq: u32, auth: &str| {
        format!(
            r#"  <send{retrans}>
    <![CDATA[

      INVITE sip:[field1]@[field2] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@[field2]>;tag=[pid]c[call_number]
      To: <sip:[field1]@[field2]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      {auth}
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>"#,
            retrans = if cseq == 1 { "" } else { " retrans=\"500\"" }
        )
    };
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            r#"  <send{retrans}>
    <![CDATA[

      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[field0]@[field2]>;tag=[pid]c[call_number]
      To: <sip:[field1]@[field2]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"#,
            retrans = if method == "BYE" {
                " retrans=\"500\""
            } else {
                ""
            }
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A caller whose outbound proxy fails over like a DNS SRV client: when
     its site does not answer the INVITE within 1 s it sends it to the other
     site ({alt}). Injection: caller;callee;domain;[authentication ...] -->
<scenario name="caller with failover">
  <nop next="1"/>
  <label id="9"/>
  <nop><action><setdest host="{host}" port="{port}" protocol="udp"/></action></nop>
  <label id="1"/>
{first}
  <recv response="100" optional="true" timeout="1000" ontimeout="9"/>
  <recv response="407" auth="true" timeout="1000" ontimeout="9"/>
  <send>
    <![CDATA[

      ACK sip:[field1]@[field2] SIP/2.0
      [last_Via:]
      From: <sip:[field0]@[field2]>;tag=[pid]c[call_number]
      To: <sip:[field1]@[field2]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{second}
  <recv response="100" optional="true" timeout="{answer_ms}"/>
  <recv response="180" optional="true" timeout="{answer_ms}"/>
  <recv response="183" optional="true" timeout="{answer_ms}"/>
  <recv response="200" rrs="true" timeout="{answer_ms}"/>
{ack}
  <pause milliseconds="50"/>
{bye}
  <recv response="200" timeout="{answer_ms}"/>
</scenario>
"#,
        host = alt.ip(),
        port = alt.port(),
        first = invite(1, ""),
        second = invite(2, "[field3]"),
        ack = in_dialog("ACK", 2),
        bye = in_dialog("BYE", 3),
    )
}

/// One SIPp call from `caller` (on `ip`) to `callee` through `primary`,
/// failing over to `alt` when `primary` does not answer within 1 s; the
/// call fails when it is not answered within `answer_ms`.
pub fn call_with_failover(
    dir: &Path,
    ip: &str,
    caller: &str,
    callee: &str,
    primary: SocketAddr,
    alt: SocketAddr,
    answer_ms: u64,
) -> SippProcess {
    let (cu, d) = caller.split_once('@').unwrap();
    let (eu, _) = callee.split_once('@').unwrap();
    let port = std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sf = write_scenario(
        dir,
        &format!("caller-{ip}-{port}.xml"),
        &caller_scenario(alt, answer_ms),
    );
    let inf = injection(
        dir,
        &format!("call-{cu}-{eu}-{port}.csv"),
        &[format!(
            "{cu};{eu};{d};[authentication username={cu} password={cu}]"
        )],
    );
    SippProcess::spawn(
        dir,
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            inf.to_str().unwrap(),
            &primary.to_string(),
            "-m",
            "1",
            "-i",
            ip,
            "-p",
            &port.to_string(),
        ],
    )
}

/// REGISTER (digest, password = user name) of `contact` for `user` through
/// `target` from a fresh socket on 127.0.0.1 with a fresh Call-ID; `expires`
/// 0 removes the binding. Returns the final status.
pub fn register_contact(target: SocketAddr, user: &str, contact: &str, expires: u32) -> u16 {
    let (name, domain) = user.split_once('@').unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let call_id = format!("{name}-{}-{}", local.port(), std::process::id());
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{name}{cseq}x{};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}>;tag={cseq}\r\nTo: <sip:{user}>\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n",
            local.port()
        )
    };
    let final_response = |sock: &std::net::UdpSocket| -> Option<Response> {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).ok()?;
            let r = Response::parse(&String::from_utf8_lossy(&buf[..n]))?;
            if r.status >= 200 {
                return Some(r);
            }
        }
    };
    sock.send_to(request(1, "").as_bytes(), target).unwrap();
    let Some(challenge) = final_response(&sock) else {
        return 408;
    };
    if challenge.status != 401 {
        return challenge.status;
    }
    let ch = voxline_auth::DigestChallenge::parse(&challenge.header("WWW-Authenticate").unwrap())
        .unwrap();
    let uri = format!("sip:{domain}");
    let auth = ch.authorize(
        name,
        name,
        &voxline_auth::ClientRequest {
            method: "REGISTER",
            uri: &uri,
            nc: 1,
            cnonce: "0a4f113b",
        },
    );
    sock.send_to(
        request(2, &format!("Authorization: {auth}\r\n")).as_bytes(),
        target,
    )
    .unwrap();
    final_response(&sock).map_or(408, |r| r.status)
}

/// The next final response `sock` receives (provisional ones skipped);
/// panics with `what` and the node's log when nothing comes in time.
pub fn final_response(sock: &std::net::UdpSocket, what: &str, node: &Node) -> String {
    let mut buf = [0u8; 8192];
    loop {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            panic!("{what}: nothing for the caller ({e})\n{}", node.log_text())
        });
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

/// SDP and RTP for the relay tests driven over ng.
pub mod media {
    use std::net::SocketAddr;

    /// A one-stream audio SDP (PCMU) with media at `addr`.
    pub fn sdp(addr: SocketAddr) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ip = addr.ip(),
            port = addr.port()
        )
    }

    /// The media address of a one-stream SDP (IPv4).
    pub fn media_addr(sdp: &str) -> SocketAddr {
        let ip = sdp
            .lines()
            .find_map(|l| l.strip_prefix("c=IN IP4 "))
            .unwrap();
        let port = sdp
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .unwrap();
        format!("{}:{port}", ip.trim()).parse().unwrap()
    }

    /// A 172-byte RTP packet (PCMU, 20 ms) with sequence number `seq`.
    pub fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.resize(172, 0xd5);
        p
    }
}
