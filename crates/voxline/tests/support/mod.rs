//! Test harness: starts the real `voxline` binary on free loopback ports
//! and runs real SIPp scenarios against it.

#![allow(dead_code)]

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
{extra}
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
