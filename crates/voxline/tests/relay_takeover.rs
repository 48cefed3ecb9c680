//! Relay takeover with the real binary: two relay-only nodes on their own
//! loopback addresses share a real redis-server (keyspace notifications on);
//! the node carrying the calls is killed with SIGKILL and the other one
//! takes over its ng address, media ports and sessions.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Node;
use support::media::{media_addr, rtp, sdp};
use voxline_relay::client::NgClient;

/// A redis-server on a free loopback port, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--notify-keyspace-events", "AKE"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian: redis-server)");
        let r = Redis { port, child };
        wait(10, || r.cli(&["PING"]).trim() == "PONG");
        r
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn owner(&self, call: &str) -> Option<String> {
        let v = self.cli(&["GET", &format!("voxline:relay:call:{call}")]);
        let v: serde_json::Value = serde_json::from_str(v.trim()).ok()?;
        v["owner"].as_str().map(str::to_owned)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "condition not met within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A relay-only node on 127.0.0.`host` with media I/O `io`; ports from
/// `ports` (start of 1,000).
fn relay_config(id: &str, host: u8, redis_port: u16, io: &str, ports: u16) -> String {
    let last = ports + 999;
    format!(
        r#"
[node]
name = "{id}"
roles = ["relay"]
data_dir = "@DATA@"
[log]
format = "json"
[admin]
listen = "127.0.0.1:0"
[relay]
ng_udp = "127.0.0.{host}:0"
port_min = {ports}
port_max = {last}
io = "{io}"
[[relay.interfaces]]
name = "default"
address = "127.0.0.{host}"
[relay.redis]
url = "redis://127.0.0.1:{redis_port}/0"
relay_id = "{id}"
"#
    )
}

/// One call: endpoint sockets and the relay ports each side sends to.
struct Call {
    id: String,
    a: UdpSocket,
    b: UdpSocket,
    to_relay_from_a: SocketAddr,
}

impl Call {
    /// A sends every 20 ms until B receives; returns how long it took.
    fn resume(&self, seq: &mut u16, within: Duration) -> Duration {
        let t0 = Instant::now();
        self.b
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 2048];
        loop {
            assert!(t0.elapsed() < within, "media did not resume on {}", self.id);
            *seq = seq.wrapping_add(1);
            self.a.send_to(&rtp(*seq), self.to_relay_from_a).unwrap();
            if self.b.recv_from(&mut buf).is_ok() {
                return t0.elapsed();
            }
        }
    }
}

async fn foreign_sessions(ng: &NgClient) -> i64 {
    let body = ng
        .request(&voxline_ng::Value::dict().with("command", voxline_ng::Value::str("statistics")))
        .await
        .unwrap();
    body.get("statistics")
        .and_then(|s| s.get("currentstatistics"))
        .and_then(|c| c.get("sessionsforeign"))
        .and_then(|v| v.as_int())
        .unwrap_or(-1)
}

#[test]
fn kill_9_relay_node_is_taken_over_by_its_standby() {
    takeover("sockets", (41, 42), 38000);
}

/// The same with `io = "raw"` on both relays: the standby's media trigger
/// and the taken-over streams go through its raw sockets.
#[test]
fn kill_9_relay_node_with_raw_io_is_taken_over_by_its_standby() {
    if !voxline_relay_dataplane::test_util::raw_permitted() {
        return;
    }
    takeover("raw", (43, 44), 37000);
}

fn takeover(io: &str, (host_a, host_b): (u8, u8), ports: u16) {
    let redis = Redis::start();
    let mut a = Node::start(&relay_config("relay-a", host_a, redis.port, io, ports));
    let b = Node::start(&relay_config("relay-b", host_b, redis.port, io, ports));
    let (a_ng, b_ng) = (a.ng.unwrap(), b.ng.unwrap());
    assert_eq!(a_ng.ip().to_string(), format!("127.0.0.{host_a}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = voxline_ng::client::RetransmitPolicy {
        timeout: Duration::from_millis(300),
        attempts: 4,
    };
    let ng = rt.block_on(NgClient::connect(a_ng, policy)).unwrap();
    let standby = rt.block_on(NgClient::connect(b_ng, policy)).unwrap();
    let mut calls = Vec::new();
    for i in 0..3 {
        let id = format!("vx-{i}");
        let a_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let offer = voxline_ng::command::MediaRequest {
            call_id: id.clone(),
            from_tag: "ft".into(),
            sdp: sdp(a_sock.local_addr().unwrap()),
            ..Default::default()
        };
        let o = rt.block_on(ng.offer(&offer)).unwrap();
        let answer = voxline_ng::command::MediaRequest {
            to_tag: Some("tt".into()),
            sdp: sdp(b_sock.local_addr().unwrap()),
            ..offer
        };
        let ans = rt.block_on(ng.answer(&answer)).unwrap();
        assert_eq!(
            media_addr(&o.sdp).ip().to_string(),
            format!("127.0.0.{host_a}")
        );
        calls.push(Call {
            id,
            a: a_sock,
            b: b_sock,
            to_relay_from_a: media_addr(&ans.sdp),
        });
    }
    let mut seq = 0u16;
    for c in &calls {
        c.resume(&mut seq, Duration::from_secs(5));
    }
    wait(10, || rt.block_on(foreign_sessions(&standby)) == 3);
    assert_eq!(redis.owner("vx-0").as_deref(), Some("relay-a"));

    a.kill9();
    let mut gaps = Vec::new();
    for c in &calls {
        gaps.push(c.resume(&mut seq, Duration::from_secs(5)));
    }
    eprintln!("media back after {gaps:?}");
    if io == "raw" {
        // B relays the taken-over calls through its raw sockets (metrics
        // are refreshed every 0.5 s).
        wait(5, || b.metric("voxline_relay_raw_sent_total", "") >= 3.0);
    }
    // Sessions written back as B's own; B serves A's ng address.
    wait(5, || redis.owner("vx-0").as_deref() == Some("relay-b"));
    let q = rt
        .block_on(ng.query(&voxline_ng::command::QueryRequest {
            call_id: "vx-1".into(),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(q.tags.len(), 2);
    let relays: serde_json::Value = serde_json::from_str(&b.admin_get("/api/v1/relays")).unwrap();
    let local = &relays["local"];
    assert_eq!(local["sessions"], 3);
    assert_eq!(local["redis"]["taken_over"][0]["relay"], "relay-a");
    assert_eq!(local["redis"]["keyspace_notifications"], true);
    assert_eq!(b.metric("voxline_relay_takeovers_total", ""), 1.0);
    let d = rt
        .block_on(ng.delete(&voxline_ng::command::DeleteRequest {
            call_id: "vx-2".into(),
            ..Default::default()
        }))
        .unwrap();
    assert!(d.warning.is_none());
    wait(5, || redis.owner("vx-2").is_none());
    assert!(
        b.log_text().contains("takeover complete"),
        "{}",
        b.log_text()
    );
}
