//! REGISTER through the all-in-one node: digest auth (MD5 with SIPp,
//! SHA-256 with a client of our own), refresh, expiry, `*` removal,
//! refused credentials and no user enumeration.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{Node, config, free_udp_port, injection, provision, scenario, sipp};
use voxline_auth::{Algorithm, ClientRequest, DigestChallenge};

const EXTRA: &str = r#"
[registrar]
min_expires = 1
[auth]
algorithms = ["MD5", "SHA-256"]
"#;

fn bindings(node: &Node, aor: &str) -> usize {
    let body = node.admin_get(&format!("/api/v1/registrations?aor={aor}"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["bindings"].as_array().map_or(0, Vec::len)
}

fn total_bindings(node: &Node) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&node.admin_get("/api/v1/stats")).unwrap();
    v["location"]["bindings"].as_u64().unwrap()
}

fn run_ok(node: &Node, what: &str, args: &[&str]) {
    let run = sipp(node.dir.path(), args);
    assert!(
        run.success,
        "{what}:\n{}\n{}\n--- node ---\n{}",
        run.stdout,
        run.stderr,
        node.log_text()
    );
}

#[test]
fn thousand_users_register_refresh_and_unregister_with_md5() {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    let users: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("u{i:04}@localhost"), format!("pw{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    provision(&node, &refs);
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("u{i:04};localhost;[authentication username=u{i:04} password=pw{i}]"))
        .collect();
    let inf = injection(node.dir.path(), "users.csv", &lines);
    let target = node.sip_udp.unwrap().to_string();
    let sf = scenario("register_auth.xml");
    let port = free_udp_port().to_string();
    let args = [
        "-sf",
        sf.to_str().unwrap(),
        "-inf",
        inf.to_str().unwrap(),
        &target,
        "-m",
        "1000",
        "-r",
        "250",
        "-l",
        "200",
        "-set",
        "expires",
        "600",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
    ];
    run_ok(&node, "initial registration of 1000 users", &args);
    assert_eq!(total_bindings(&node), 1000);
    assert_eq!(bindings(&node, "u0042@localhost"), 1);

    // Refresh: same contacts, new Call-IDs: still one binding each.
    run_ok(&node, "refresh of 1000 users", &args);
    assert_eq!(total_bindings(&node), 1000);

    // `*` removes every binding of one user.
    let one = injection(node.dir.path(), "one.csv", &[lines[42].clone()]);
    let sf = scenario("unregister_all.xml");
    run_ok(
        &node,
        "Contact: * removal",
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            one.to_str().unwrap(),
            &target,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ],
    );
    assert_eq!(bindings(&node, "u0042@localhost"), 0);
    assert_eq!(total_bindings(&node), 999);
}

#[test]
fn bindings_expire() {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    provision(&node, &[("eve@localhost", "evepw")]);
    let inf = injection(
        node.dir.path(),
        "eve.csv",
        &["eve;localhost;[authentication username=eve password=evepw]".into()],
    );
    let target = node.sip_udp.unwrap().to_string();
    let sf = scenario("register_auth.xml");
    run_ok(
        &node,
        "short registration",
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
            "2",
            "-i",
            "127.0.0.1",
        ],
    );
    assert_eq!(bindings(&node, "eve@localhost"), 1);
    // Expiry is a matter of time: poll the admin API against a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bindings(&node, "eve@localhost") > 0 {
        assert!(Instant::now() < deadline, "binding did not expire");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn wrong_password_and_unknown_user_are_refused_alike() {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    provision(&node, &[("alice@localhost", "right")]);
    let target = node.sip_udp.unwrap().to_string();
    let sf = scenario("register_refused.xml");
    for (name, line) in [
        (
            "wrong password",
            "alice;localhost;[authentication username=alice password=wrong]",
        ),
        (
            "unknown user",
            "mallory;localhost;[authentication username=mallory password=whatever]",
        ),
    ] {
        let inf = injection(
            node.dir.path(),
            &format!("{}.csv", name.replace(' ', "_")),
            &[line.into()],
        );
        run_ok(
            &node,
            name,
            &[
                "-sf",
                sf.to_str().unwrap(),
                "-inf",
                inf.to_str().unwrap(),
                &target,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
            ],
        );
    }
    assert_eq!(bindings(&node, "alice@localhost"), 0);

    // Byte for byte: the two refusals differ only in the per-request echo
    // (Via branch, To tag) and the nonce.
    let sock = client(&node);
    let challenge = register(&sock, "alice", "b1", None);
    let nonce = header_value(&challenge, "WWW-Authenticate", "MD5").unwrap();
    let ch = DigestChallenge::parse(&nonce).unwrap();
    let wrong = ch.authorize("alice", "wrong", &req_for("REGISTER", 1));
    let unknown = ch.authorize("alice0", "whatever", &req_for("REGISTER", 2));
    let a = register(&sock, "alice", "b2", Some(&wrong));
    let b = register(&sock, "alice0", "b3", Some(&unknown));
    assert!(a.starts_with("SIP/2.0 401"), "{a}");
    assert_eq!(
        mask(&a, "b2", "alice"),
        mask(&b, "b3", "alice0"),
        "responses must not tell users apart"
    );
}

#[test]
fn sha256_digest_with_our_own_client() {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    provision(&node, &[("carol@localhost", "sha-secret")]);
    let sock = client(&node);
    let first = register(&sock, "carol", "s1", None);
    assert!(first.starts_with("SIP/2.0 401"), "{first}");
    let values: Vec<String> = first
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: ").map(str::to_owned))
        .collect();
    assert_eq!(values.len(), 2, "both algorithms offered: {first}");
    let ch = DigestChallenge::pick(values.iter().map(String::as_str), &[Algorithm::Sha256])
        .expect("SHA-256 offered");
    let auth = ch.authorize("carol", "sha-secret", &req_for("REGISTER", 1));
    assert!(auth.contains("algorithm=SHA-256"), "{auth}");
    let ok = register(&sock, "carol", "s2", Some(&auth));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(bindings(&node, "carol@localhost"), 1);
}

#[test]
fn a_register_with_a_tel_to_or_an_unknown_extension_is_refused() {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    let sock = client(&node);
    let local = sock.local_addr().unwrap();
    let request = |to: &str, extra: &str, branch: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:dave@localhost>;tag=ft1\r\nTo: {to}\r\n\
Call-ID: reg-ext-{branch}\r\nCSeq: 1 REGISTER\r\nContact: <sip:dave@{local}>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    // RFC 3261 §10.3 step 5, RFC 4475 §3.3.4.
    let tel = exchange(&sock, &request("<tel:+15551234567>", "", "t1"));
    assert!(
        tel.starts_with("SIP/2.0 400 Bad Request - To Must Be a SIP or SIPS URI\r\n"),
        "{tel}"
    );
    // Step 2: Require is checked (as a UAS), before authentication.
    let ext = exchange(
        &sock,
        &request("<sip:dave@localhost>", "Require: x-unknown\r\n", "t2"),
    );
    assert!(ext.starts_with("SIP/2.0 420 "), "{ext}");
    assert!(ext.contains("\r\nUnsupported: x-unknown\r\n"), "{ext}");
    assert_eq!(bindings(&node, "dave@localhost"), 0);
}

static CSEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn client(node: &Node) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(node.sip_udp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn req_for(method: &str, nc: u32) -> ClientRequest<'_> {
    ClientRequest {
        method,
        uri: "sip:localhost",
        nc,
        cnonce: "0a4f113b",
    }
}

/// Sends one REGISTER for `user` and returns the final response.
fn register(sock: &UdpSocket, user: &str, branch: &str, auth: Option<&str>) -> String {
    let local = sock.local_addr().unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@localhost>;tag=ft1\r\nTo: <sip:{user}@localhost>\r\n\
Call-ID: reg-test-call\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@{local}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
        CSEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    exchange(sock, &msg)
}

/// Sends `msg` and returns the final response to it.
fn exchange(sock: &UdpSocket, msg: &str) -> String {
    sock.send(msg.as_bytes()).unwrap();
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).expect("response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

fn header_value(msg: &str, name: &str, containing: &str) -> Option<String> {
    msg.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .find(|v| v.contains(containing))
        .map(str::to_owned)
}

/// Replaces the per-request parts of a response by placeholders.
fn mask(msg: &str, branch: &str, user: &str) -> String {
    msg.lines()
        .map(|l| {
            let mut l = l
                .replace(branch, "BRANCH")
                .replace(&format!("sip:{user}@"), "sip:USER@");
            if let Some(i) = l.find("nonce=\"") {
                let end = l[i + 7..].find('"').map_or(l.len(), |e| i + 7 + e);
                l.replace_range(i + 7..end, "NONCE");
            }
            if let Some(i) = l.find(";tag=")
                && l.starts_with("To:")
            {
                l.truncate(i);
            }
            if l.starts_with("CSeq:") {
                l = "CSeq: N REGISTER".into();
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `kill -9` while registrations pour in over two UDP workers: every
/// REGISTER the generator saw answered with 200 is there after the restart.
/// (The location log is written once per receive batch, before the batch's
/// answers leave.) Each flow registers a user of its own, so answered flows
/// and recovered addresses-of-record can be compared by count.
#[test]
fn every_registration_answered_before_a_kill_9_is_recovered() {
    let mut node = Node::start(&config(
        "\"registrar\"",
        "[registrar]\nauthenticate = false\n[sip.transport]\nudp_workers = 2\n",
    ));
    let target = node.sip_udp.unwrap();
    let generator = std::thread::spawn(move || {
        support::loadgen(voxline_loadgen::uac::Scenario::Register, target, |c| {
            c.users = 1_000_000;
            c.expires = 3600;
            c.shape = voxline_loadgen::engine::Shape::Concurrency(200);
            // Long enough to be cut short: the node is killed after about
            // 0.4 s here (3,000 registrations), well inside the window.
            c.duration = Duration::from_secs(8);
            c.drain = Duration::from_secs(1);
        })
    });
    let aors = |node: &Node| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&node.admin_get("/api/v1/stats")).unwrap();
        v["location"]["aors"].as_u64().unwrap()
    };
    assert!(
        support::wait_until(Duration::from_secs(20), || aors(&node) >= 3000),
        "registrations under way:\n{}",
        node.log_text()
    );
    node.kill9();
    let report = generator.join().unwrap();
    let answered = support::completed(&report);
    assert!(answered >= 3000, "{answered} answered");
    assert!(
        report.flows_started < 1_000_000,
        "every flow was a user of its own"
    );
    node.restart();
    let recovered = aors(&node);
    // Answered ones are all there; some more may be (written, then killed
    // before their answer left).
    assert!(
        recovered >= answered && recovered <= report.flows_started,
        "{recovered} recovered, {answered} answered, {} started",
        report.flows_started
    );
}
