//! `voxline-loadgen`: command-line front end of the batched SIP load generator.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use voxline_loadgen::digest::Algorithm;
use voxline_loadgen::engine::{RunConfig, Shape, run};
use voxline_loadgen::responder::Responder;
use voxline_loadgen::uac::{CallOptions, Scenario, Timing};

#[derive(Parser, Debug)]
#[command(
    name = "voxline-loadgen",
    about = "Batched SIP UDP load generator (recvmmsg/sendmmsg). Sends only to --target."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// OPTIONS -> 200 (stateless reply throughput).
    Options(LoadArgs),
    /// REGISTER -> 200 for --users distinct users.
    Register(LoadArgs),
    /// REGISTER -> 401 -> REGISTER with Authorization -> 200.
    RegisterAuth(LoadArgs),
    /// Zero-length calls: the generator registers --callees and answers them, and calls them.
    Call(LoadArgs),
    /// Answer every request with a canned 200 OK (to measure the generator itself).
    Responder(ResponderArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Alg {
    Md5,
    Sha256,
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct LoadArgs {
    /// Server address; the only address datagrams are sent to.
    #[arg(long)]
    target: SocketAddr,
    /// Local IP to bind (default: loopback of the target's family).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Open loop: new flows per second.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: flows kept outstanding (default 100 when no --rate).
    #[arg(long)]
    concurrency: Option<u64>,
    /// Measurement window in seconds (after warm-up). Default 10, or up to 3600 with --count.
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before the window.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Start at most this many flows.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds to wait for open flows after the window.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Event-loop threads (each has its own sockets and share of the load).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Thread i sends from --bind + i (127.0.0.1, 127.0.0.2, ...): as many
    /// source addresses as threads.
    #[arg(long)]
    source_per_thread: bool,
    /// Distinct users u00000000.. (flows cycle through them).
    #[arg(long, default_value_t = 1000)]
    users: u32,
    /// Callees c00000000.. registered and answered by the generator (call).
    #[arg(long, default_value_t = 100)]
    callees: u32,
    /// SIP domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// REGISTER Expires.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Password for challenges; `{user}` is replaced by the user name.
    #[arg(long)]
    password: Option<String>,
    /// Digest algorithm to answer with when the server offers it.
    #[arg(long, value_enum, default_value_t = Alg::Md5)]
    algorithm: Alg,
    /// T1 in milliseconds.
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// Transaction timeout in milliseconds (default 64*T1).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Maximum flows outstanding (slots).
    #[arg(long, default_value_t = 100_000)]
    max_outstanding: u32,
    /// Called side: do not send 100 Trying.
    #[arg(long)]
    no_trying: bool,
    /// Call: the INVITE carries an SDP offer (audio PCMU at the caller socket) and the
    /// callee's 200 an SDP answer (audio PCMU at the callee socket), so a media-anchoring
    /// proxy sends its relay offer, answer and (on BYE) delete for every call.
    #[arg(long)]
    sdp: bool,
    /// Call: hold the calls (INVITE, 200, ACK; no BYE): a call is complete when its 200
    /// is ACKed and the dialog stays confirmed on the server.
    #[arg(long)]
    hold: bool,
    /// Call with --sdp --hold: write the relay ports of every established call to this
    /// file, two lines per call: the port of the 200's SDP (where the caller sends its
    /// media) then the port of the SDP the callee received (where the callee sends).
    /// The format of voxline-relaygen's --forwarder-ports.
    #[arg(long, requires_all = ["sdp", "hold"])]
    media_ports: Option<std::path::PathBuf>,
    /// Print one JSON line on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ResponderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5099")]
    listen: SocketAddr,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Stop after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
    /// Print one JSON line on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Challenge REGISTERs without credentials with a canned 401 for this realm (the
    /// credentials that follow are not checked): the ceiling of `register-auth`.
    #[arg(long)]
    challenge: Option<String>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (scenario, a) = match cli.command {
        Command::Options(a) => (Scenario::Options, a),
        Command::Register(a) => (Scenario::Register, a),
        Command::RegisterAuth(a) => (Scenario::RegisterAuth, a),
        Command::Call(a) => (Scenario::Call, a),
        Command::Responder(r) => return responder(&r),
    };
    let mut cfg = RunConfig::new(scenario, a.target);
    if let Some(b) = a.bind {
        cfg.bind = b;
    }
    cfg.shape = match (a.rate, a.concurrency) {
        (Some(r), _) => Shape::Rate(r),
        (None, Some(c)) => Shape::Concurrency(c),
        (None, None) => Shape::Concurrency(100),
    };
    cfg.duration = secs(
        a.duration
            .unwrap_or(if a.count.is_some() { 3600.0 } else { 10.0 }),
    );
    cfg.warmup = secs(a.warmup);
    cfg.count = a.count;
    cfg.drain = secs(a.drain);
    cfg.threads = a.threads.max(1);
    cfg.source_per_thread = a.source_per_thread;
    cfg.users = a.users.max(1);
    cfg.callees = a.callees.max(1);
    cfg.domain = a.domain;
    cfg.expires = a.expires;
    cfg.password = a.password;
    cfg.algorithm = match a.algorithm {
        Alg::Md5 => Algorithm::Md5,
        Alg::Sha256 => Algorithm::Sha256,
    };
    let t1 = a.t1_ms.max(1) * 1000;
    cfg.timing = Timing {
        t1_us: t1,
        t2_us: t1 * 8,
        timeout_us: a.timeout_ms.map_or(t1 * 64, |t| t.max(1) * 1000),
    };
    cfg.max_outstanding = a.max_outstanding.max(1);
    cfg.send_trying = !a.no_trying;
    cfg.call = CallOptions {
        sdp: a.sdp,
        hold: a.hold,
        record_media: a.media_ports.is_some(),
    };
    if scenario == Scenario::RegisterAuth && cfg.password.is_none() {
        eprintln!("register-auth needs --password");
        return ExitCode::from(2);
    }
    match run(&cfg) {
        Ok(report) => {
            if let Some(path) = &a.media_ports {
                let text: String = report
                    .media_pairs
                    .iter()
                    .map(|(caller, callee)| format!("{}\n{}\n", caller.port(), callee.port()))
                    .collect();
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("voxline-loadgen: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!(
                    "media ports of {} calls written to {}",
                    report.media_pairs.len(),
                    path.display()
                );
            }
            if a.json {
                eprintln!("{}", report.summary());
                println!("{}", report.json());
            } else {
                println!("{}", report.summary());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voxline-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn responder(r: &ResponderArgs) -> ExitCode {
    let resp = match Responder::bind(r.listen) {
        Ok(x) => match &r.challenge {
            Some(realm) => x.challenging(realm),
            None => x,
        },
        Err(e) => {
            eprintln!("voxline-loadgen responder: bind {}: {e}", r.listen);
            return ExitCode::FAILURE;
        }
    };
    let stop = AtomicBool::new(false);
    match resp.run(secs(r.duration), r.count, &stop) {
        Ok(st) => {
            if r.json {
                println!("{}", serde_json::to_string(&st).unwrap_or_default());
            } else {
                println!(
                    "responder: received {} answered {} (challenged {}) ignored {} parse errors {} send errors {}",
                    st.received,
                    st.answered,
                    st.challenged,
                    st.ignored,
                    st.parse_errors,
                    st.send_errors
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voxline-loadgen responder: {e}");
            ExitCode::FAILURE
        }
    }
}
