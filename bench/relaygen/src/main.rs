//! `voxline-relaygen`: load generator and helpers for benchmarking the
//! Voxline relay against rtpengine and a trivial forwarder.
//!
//! - `serve-relay`: run the Voxline relay standalone (to pin it with taskset).
//! - `forwarder`: the trivial recvmmsg→sendmmsg forwarder (the ceiling).
//! - `run`: set up N sessions over ng (or use the forwarder's fixed ports),
//!   send 172-byte RTP at 50 packets/s per direction per stream, measure
//!   loss, the target's CPU and memory.
//! - `ngbench`: offer+answer pairs per second over ng.
//! - `takeover`: sessions on a relay followed by a standby through Redis,
//!   RTP on all of them, the relay killed (SIGKILL) mid-stream: the media
//!   gap per flow and the share of sessions that continue.

mod forwarder;
mod gaps;
mod ngload;
mod procstat;
mod takeover;
mod traffic;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use voxline_ng::client::RetransmitPolicy;
use voxline_ng::command::{DeleteRequest, MediaRequest};
use voxline_relay::client::NgClient;

/// The allocator of the `voxline` binary (crates/voxline/src/main.rs):
/// `serve-relay` runs the relay as it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Load generator for the Voxline relay, rtpengine and a trivial forwarder")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the Voxline relay standalone until SIGINT/SIGTERM.
    ServeRelay {
        /// A Voxline config file: its `[relay]` section is used (other
        /// sections are ignored) instead of the options below.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// ng UDP address.
        #[arg(long, default_value = "127.0.0.1:22222")]
        ng: SocketAddr,
        /// Media address.
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        #[arg(long, default_value_t = 30000)]
        port_min: u16,
        #[arg(long, default_value_t = 39999)]
        port_max: u16,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Forwarding I/O: `sockets` or `raw` (the relay's `io` key).
        #[arg(long, default_value = "sockets")]
        io: String,
    },
    /// Run the trivial forwarder on 2 * sessions free ports, listed in
    /// `ports_file`.
    Forwarder {
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        ports_file: std::path::PathBuf,
        /// Raw I/O (the ceiling for the relay's `io = "raw"`) on `2 *
        /// sessions` consecutive ports from this one.
        #[arg(long)]
        raw_base: Option<u16>,
    },
    /// One load step: set up sessions, send RTP, print a JSON line.
    Run {
        /// Label for the output (voxline, rtpengine, forwarder).
        #[arg(long)]
        target: String,
        /// ng address (omit with --forwarder-base).
        #[arg(long)]
        ng: Option<SocketAddr>,
        /// Ports file of the trivial forwarder, instead of ng sessions.
        #[arg(long)]
        forwarder_ports: Option<std::path::PathBuf>,
        /// Target process id, for CPU and memory.
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        sessions: usize,
        /// Packets per second per direction per stream.
        #[arg(long, default_value_t = 50)]
        pps: u32,
        #[arg(long, default_value_t = 172)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Tag making call-ids unique across runs.
        #[arg(long, default_value = "run")]
        run_id: String,
        /// Mark the output line as the memory measurement (fresh process).
        #[arg(long)]
        memory_run: bool,
    },
    /// Kill a relay mid-stream and measure the takeover by its standby.
    Takeover {
        /// ng address of the relay that is killed (the proxy's view).
        #[arg(long)]
        ng: SocketAddr,
        /// The standby's own ng address.
        #[arg(long)]
        standby_ng: SocketAddr,
        /// Process id of the relay to kill.
        #[arg(long)]
        kill_pid: u32,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Packets per second per direction per session.
        #[arg(long, default_value_t = 50)]
        pps: u32,
        #[arg(long, default_value_t = 172)]
        size: usize,
        /// Seconds of media before the kill.
        #[arg(long, default_value_t = 3.0)]
        before_secs: f64,
        /// Seconds of media after the kill.
        #[arg(long, default_value_t = 5.0)]
        after_secs: f64,
        #[arg(long, default_value = "takeover")]
        run_id: String,
        /// Keep the sessions (no delete at the end).
        #[arg(long)]
        keep: bool,
    },
    /// Offer+answer pairs per second over ng.
    Ngbench {
        #[arg(long)]
        target: String,
        #[arg(long)]
        ng: SocketAddr,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 5000)]
        pairs: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "ng")]
        run_id: String,
        /// Measured runs (each `pairs` pairs, then all deleted); one JSON
        /// line per run and a summary line with the median.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Seconds between runs, after the deletes (longer than the
        /// target's port quarantine, so every run finds the whole range).
        #[arg(long, default_value_t = 0.0)]
        pause_secs: f64,
    },
}

pub(crate) fn sdp(addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

fn media_addr(sdp: &str) -> anyhow::Result<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .context("no c= line")?
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .context("no m=audio line")?;
    Ok(format!("{ip}:{port}").parse()?)
}

pub(crate) fn policy() -> RetransmitPolicy {
    RetransmitPolicy {
        timeout: Duration::from_millis(2000),
        attempts: 3,
    }
}

fn media_req(call_id: String, from: &str, to: Option<&str>, addr: SocketAddr) -> MediaRequest {
    MediaRequest {
        call_id,
        from_tag: from.into(),
        to_tag: to.map(str::to_owned),
        sdp: sdp(addr),
        supports: vec!["load limit".into()],
        ..MediaRequest::default()
    }
}

/// Generator sockets per side.
pub(crate) const SOCKETS_PER_SIDE: usize = 16;

/// Creates `n` sessions; every session's caller side uses one of the
/// generator's A sockets, its callee side one of the B sockets. Returns the
/// flows (2 per session) and the call-ids.
pub(crate) async fn setup(
    ng: &Arc<NgClient>,
    n: usize,
    run_id: &str,
    addrs: &[SocketAddr],
) -> anyhow::Result<(Vec<(usize, SocketAddr)>, Vec<String>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (ng, sem) = (ng.clone(), sem.clone());
        let call_id = format!("{run_id}-{i}");
        let (sa, sb) = (2 * (i % SOCKETS_PER_SIDE), 2 * (i % SOCKETS_PER_SIDE) + 1);
        let (a, b) = (addrs[sa], addrs[sb]);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let o = ng.offer(&media_req(call_id.clone(), "a", None, a)).await?;
            let ans = ng
                .answer(&media_req(call_id.clone(), "a", Some("b"), b))
                .await?;
            anyhow::Ok((
                (sa, media_addr(&ans.sdp)?),
                (sb, media_addr(&o.sdp)?),
                call_id,
            ))
        }));
    }
    let mut flows = Vec::with_capacity(2 * n);
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        let (a, b, id) = t.await??;
        flows.push(a);
        flows.push(b);
        ids.push(id);
    }
    Ok((flows, ids))
}

async fn teardown(ng: &Arc<NgClient>, ids: Vec<String>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for id in ids {
        let (ng, sem) = (ng.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let _ = ng
                .delete(&DeleteRequest {
                    call_id: id,
                    from_tag: Some("a".into()),
                    ..Default::default()
                })
                .await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The `[relay]` section of a Voxline config file.
#[derive(serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    relay: voxline_relay::RelayConfig,
}

fn init_logging() {
    let filter = std::env::var("VOXLINE_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::ServeRelay {
            config: Some(path), ..
        } => {
            init_logging();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: ConfigFile =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            serve(file.relay)
        }
        Cmd::ServeRelay {
            config: None,
            ng,
            ip,
            port_min,
            port_max,
            workers,
            io,
        } => serve(voxline_relay::RelayConfig {
            io: match io.as_str() {
                "sockets" => voxline_relay::RelayIo::Sockets,
                "raw" => voxline_relay::RelayIo::Raw,
                other => bail!("--io {other}: expected sockets or raw"),
            },
            ng_udp: ng,
            interfaces: vec![voxline_relay::InterfaceConfig {
                name: "default".into(),
                address: ip,
                advertised_address: None,
            }],
            port_min,
            port_max,
            workers,
            port_quarantine_secs: 1,
            timeout_secs: 3600,
            ..voxline_relay::RelayConfig::default()
        }),
        Cmd::Takeover {
            ng,
            standby_ng,
            kill_pid,
            sessions,
            pps,
            size,
            before_secs,
            after_secs,
            run_id,
            keep,
        } => {
            let report = takeover::run(&takeover::Args {
                ng,
                standby_ng,
                kill_pid,
                sessions,
                pps,
                size,
                before: Duration::from_secs_f64(before_secs),
                after: Duration::from_secs_f64(after_secs),
                run_id,
                keep,
            })?;
            println!("{report}");
            Ok(())
        }
        Cmd::Forwarder {
            ip,
            sessions,
            ports_file,
            raw_base,
        } => match raw_base {
            Some(base) => forwarder::run_raw(base, sessions, &ports_file),
            None => forwarder::run(ip, sessions, &ports_file),
        },
        Cmd::Run {
            target,
            ng,
            forwarder_ports,
            pid,
            sessions,
            pps,
            size,
            warmup_secs,
            duration_secs,
            run_id,
            memory_run,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let rss_before = procstat::rss_kib(pid).unwrap_or(0);
            let mut plan = traffic::Plan::with_sockets(2 * SOCKETS_PER_SIDE)?;
            let addrs: Vec<SocketAddr> = plan
                .sockets
                .iter()
                .map(|s| s.local_addr())
                .collect::<Result<_, _>>()?;
            let (ids, client, setup_secs) = match (ng, forwarder_ports) {
                (Some(ng), _) => {
                    let client = Arc::new(rt.block_on(NgClient::connect(ng, policy()))?);
                    let t = Instant::now();
                    let (flows, ids) = rt.block_on(setup(&client, sessions, &run_id, &addrs))?;
                    plan.flows = flows;
                    (ids, Some(client), t.elapsed().as_secs_f64())
                }
                (None, Some(file)) => {
                    let ports: Vec<u16> = std::fs::read_to_string(&file)?
                        .lines()
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                    for i in 0..2 * sessions {
                        let port = *ports.get(i).context("ports file too short")?;
                        let dest = SocketAddr::from(([127, 0, 0, 1], port));
                        let sock = 2 * ((i / 2) % SOCKETS_PER_SIDE) + i % 2;
                        plan.flows.push((sock, dest));
                    }
                    (Vec::new(), None, 0.0)
                }
                (None, None) => bail!("need --ng or --forwarder-ports"),
            };
            std::thread::sleep(Duration::from_millis(200));
            let rss_after = procstat::rss_kib(pid).unwrap_or(0);
            let mut drops_start = (0, 0, 0);
            let mut drops_end = (0, 0, 0);
            let mut cpu_start = 0.0;
            let mut cpu_end = 0.0;
            let mut t_start = Instant::now();
            let mut t_end = Instant::now();
            let w = traffic::run(
                &plan,
                pps,
                size,
                Duration::from_secs(warmup_secs),
                Duration::from_secs(duration_secs),
                |start| {
                    let c = procstat::cpu_seconds(pid).unwrap_or(0.0);
                    if start {
                        drops_start = procstat::udp_drops();
                        cpu_start = c;
                        t_start = Instant::now();
                    } else {
                        drops_end = procstat::udp_drops();
                        cpu_end = c;
                        t_end = Instant::now();
                    }
                },
            )?;
            let wall = t_end.duration_since(t_start).as_secs_f64().max(1e-9);
            let cpu = (cpu_end - cpu_start) / wall;
            let offered = plan.flows.len() as f64 * f64::from(pps);
            let received_pps = w.received as f64 / w.seconds.max(1e-9);
            let loss = if w.sent > 0 {
                (1.0 - w.received as f64 / w.sent as f64).max(0.0)
            } else {
                1.0
            };
            // Steady state: after the traffic window transient buffers
            // (ng reply caches) have expired.
            let rss_after_traffic = procstat::rss_kib(pid).unwrap_or(0);
            if let Some(client) = &client {
                rt.block_on(teardown(client, ids));
            }
            let line = serde_json::json!({
                "target": target,
                "memory_run": memory_run,
                "sessions": sessions,
                "window_secs": w.seconds,
                "offered_pps": offered,
                "sent": w.sent,
                "send_errors": w.send_errors,
                "late_slices": w.late_slices,
                "kernel_rcvbuf_drops": drops_end.0 - drops_start.0,
                "kernel_noport_drops": drops_end.1 - drops_start.1,
                "loadavg": procstat::loadavg(),
                "received": w.received,
                "received_pps": received_pps.round(),
                "loss_pct": (loss * 100.0 * 1000.0).round() / 1000.0,
                "cpu_pct": (cpu * 1000.0).round() / 10.0,
                "cpu_pct_per_10k_pps": (cpu * 100.0 / (received_pps / 10_000.0).max(1e-9) * 100.0).round() / 100.0,
                "rss_before_kib": rss_before,
                "rss_after_setup_kib": rss_after,
                "rss_after_traffic_kib": rss_after_traffic,
                "mem_per_session_bytes_setup": if sessions > 0 { (rss_after.saturating_sub(rss_before) * 1024) / sessions as u64 } else { 0 },
                "mem_per_session_bytes": if sessions > 0 { (rss_after_traffic.saturating_sub(rss_before) * 1024) / sessions as u64 } else { 0 },
                "setup_secs": (setup_secs * 1000.0).round() / 1000.0,
            });
            println!("{line}");
            Ok(())
        }
        Cmd::Ngbench {
            target,
            ng,
            pid,
            pairs,
            concurrency,
            run_id,
            runs,
            pause_secs,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(NgClient::connect(ng, policy()))?;
            let client = Arc::new(client);
            let mut rates = Vec::new();
            let mut failed_total = 0;
            for run in 0..runs.max(1) {
                if run > 0 && pause_secs > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(pause_secs));
                }
                let cpu0 = procstat::cpu_seconds(pid).unwrap_or(0.0);
                let self0 = procstat::cpu_seconds(std::process::id()).unwrap_or(0.0);
                let r = ngload::run(ng, pairs, concurrency, &format!("{run_id}-{run}"))?;
                let cpu = procstat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
                let own = procstat::cpu_seconds(std::process::id()).unwrap_or(0.0) - self0;
                rt.block_on(teardown(&client, r.call_ids));
                // Only pairs whose offer and answer both succeeded count.
                let rate = r.ok as f64 / r.seconds;
                rates.push(rate);
                failed_total += r.failed;
                println!(
                    "{}",
                    serde_json::json!({
                        "target": target,
                        "ng_run": run,
                        "pairs": pairs,
                        "window": concurrency,
                        "ok": r.ok,
                        "failed": r.failed,
                        "seconds": (r.seconds * 1000.0).round() / 1000.0,
                        "pairs_per_sec": rate.round(),
                        "target_cpu_pct": (cpu / r.seconds * 1000.0).round() / 10.0,
                        "target_cpu_us_per_pair": if r.ok > 0 { (cpu * 1e6 / r.ok as f64).round() } else { 0.0 },
                        "generator_cpu_pct": (own / r.seconds * 1000.0).round() / 10.0,
                        "loadavg": procstat::loadavg(),
                    })
                );
            }
            if runs > 1 {
                let mut sorted = rates.clone();
                sorted.sort_by(f64::total_cmp);
                println!(
                    "{}",
                    serde_json::json!({
                        "target": target,
                        "ng_summary": true,
                        "pairs": pairs,
                        "window": concurrency,
                        "runs": rates.len(),
                        "failed": failed_total,
                        "median_pairs_per_sec": median(&sorted).round(),
                        "min_pairs_per_sec": sorted.first().copied().unwrap_or(0.0).round(),
                        "max_pairs_per_sec": sorted.last().copied().unwrap_or(0.0).round(),
                        "runs_pairs_per_sec": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
                    })
                );
            }
            Ok(())
        }
    }
}

/// Median of sorted values (mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted.get(n / 2).copied().unwrap_or(0.0),
        _ => {
            let a = sorted.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = sorted.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

/// Runs the relay until SIGINT/SIGTERM; prints `ready <ng address>` once
/// it serves.
fn serve(config: voxline_relay::RelayConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let relay = voxline_relay::Relay::start(config).await?;
        println!("ready {}", relay.ng_udp_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        relay.shutdown().await;
        anyhow::Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_sdp_parses_and_media_address_round_trips() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let body = sdp(addr);
        let parsed = voxline_sdp::Sdp::parse(&body).unwrap();
        assert_eq!(parsed.media(0).unwrap().port, 40000);
        assert_eq!(media_addr(&body).unwrap(), addr);
        assert!(media_addr("v=0\r\n").is_err());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1.0, 5.0, 9.0]), 5.0);
        assert_eq!(median(&[1.0, 3.0, 5.0, 9.0]), 4.0);
    }

    #[test]
    fn reads_own_process_numbers() {
        let pid = std::process::id();
        assert!(procstat::rss_kib(pid).unwrap() > 0);
        assert!(procstat::cpu_seconds(pid).unwrap() >= 0.0);
        assert!(procstat::cpu_seconds(u32::MAX).is_none());
    }
}
