//! `voxline-relaygen takeover`: sessions on relay A (followed by standby B
//! through Redis), RTP at a fixed rate on every session, A killed with
//! SIGKILL mid-stream; reports the media gap per flow, how many sessions
//! continue, and whether `query`/`delete` through A's ng address still work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use voxline_ng::Value;
use voxline_ng::command::{DeleteRequest, QueryRequest};
use voxline_relay::client::NgClient;

use crate::gaps::{self, quantile};
use crate::traffic::Plan;
use crate::{SOCKETS_PER_SIDE, policy, setup};

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Args {
    /// ng address of the relay to kill (kept by the standby).
    pub ng: SocketAddr,
    /// ng address of the standby (its own).
    pub standby_ng: SocketAddr,
    /// Process to kill.
    pub kill_pid: u32,
    /// Sessions.
    pub sessions: usize,
    /// Packets per second per flow.
    pub pps: u32,
    /// Packet size.
    pub size: usize,
    /// Media before the kill.
    pub before: Duration,
    /// Media after the kill.
    pub after: Duration,
    /// Call-id prefix.
    pub run_id: String,
    /// Leave the sessions (no delete at the end).
    pub keep: bool,
}

async fn foreign_sessions(ng: &NgClient) -> Option<i64> {
    let body = ng
        .request(&Value::dict().with("command", Value::str("statistics")))
        .await
        .ok()?;
    body.get("statistics")?
        .get("currentstatistics")?
        .get("sessionsforeign")?
        .as_int()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Runs it; returns the report as JSON.
pub fn run(a: &Args) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut plan = Plan::with_sockets(2 * SOCKETS_PER_SIDE)?;
    let addrs: Vec<SocketAddr> = plan
        .sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    let client = Arc::new(rt.block_on(NgClient::connect(a.ng, policy()))?);
    let standby = rt.block_on(NgClient::connect(a.standby_ng, policy()))?;
    let t = Instant::now();
    let (flows, ids) = rt.block_on(setup(&client, a.sessions, &a.run_id, &addrs))?;
    plan.flows = flows;
    let setup_secs = t.elapsed().as_secs_f64();
    // The standby must hold every session before the kill.
    let t = Instant::now();
    loop {
        let n = rt.block_on(foreign_sessions(&standby)).unwrap_or(0);
        if n >= a.sessions as i64 {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("standby holds {n} of {} sessions after 60 s", a.sessions);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let follow_secs = t.elapsed().as_secs_f64();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(a.kill_pid).context("pid")?);
    let r = gaps::run(&plan, a.pps, a.size, a.before, a.after, || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    })?;
    let steady = Duration::from_millis(200);
    let resumed = |f: usize| {
        r.after.get(f).is_some_and(|n| *n > 0)
            && r.silent_at_end
                .get(f)
                .copied()
                .flatten()
                .is_some_and(|s| s < steady)
    };
    let flows_resumed = (0..plan.flows.len()).filter(|f| resumed(*f)).count();
    let sessions_resumed = (0..a.sessions)
        .filter(|s| gaps::flows_of(*s).iter().all(|f| resumed(*f)))
        .count();
    let mut resume: Vec<f64> = r.resume.iter().flatten().map(|d| ms(*d)).collect();
    let mut kill_gap: Vec<f64> = r.kill_gap.iter().flatten().map(|d| ms(*d)).collect();
    let other_gap_max = r.other_gap.iter().map(|d| ms(*d)).fold(0.0, f64::max);
    // query and delete through the dead relay's address.
    let (query_ok, delete_ok) = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for id in ids {
            let (ng, sem, keep) = (client.clone(), sem.clone(), a.keep);
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let q = ng
                    .query(&QueryRequest {
                        call_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .is_ok_and(|s| s.tags.len() == 2);
                let d = !keep
                    && ng
                        .delete(&DeleteRequest {
                            call_id: id,
                            from_tag: Some("a".into()),
                            ..Default::default()
                        })
                        .await
                        .is_ok_and(|d| d.warning.is_none());
                (q, d)
            }));
        }
        let (mut q, mut d) = (0usize, 0usize);
        for t in tasks {
            if let Ok((qo, dok)) = t.await {
                q += usize::from(qo);
                d += usize::from(dok);
            }
        }
        (q, d)
    });
    Ok(serde_json::json!({
        "sessions": a.sessions,
        "flows": plan.flows.len(),
        "pps_per_flow": a.pps,
        "setup_secs": (setup_secs * 1000.0).round() / 1000.0,
        "standby_followed_secs": (follow_secs * 1000.0).round() / 1000.0,
        "sent": r.sent,
        "received": r.received,
        "received_before_kill": r.before.iter().sum::<u64>(),
        "received_after_kill": r.after.iter().sum::<u64>(),
        "flows_resumed": flows_resumed,
        "sessions_resumed": sessions_resumed,
        "sessions_resumed_pct": (sessions_resumed as f64 * 1000.0 / a.sessions.max(1) as f64).round() / 10.0,
        "resume_ms_p50": quantile(&mut resume, 0.5),
        "resume_ms_p99": quantile(&mut resume, 0.99),
        "resume_ms_max": quantile(&mut resume, 1.0),
        "kill_gap_ms_p50": quantile(&mut kill_gap, 0.5),
        "kill_gap_ms_p99": quantile(&mut kill_gap, 0.99),
        "kill_gap_ms_max": quantile(&mut kill_gap, 1.0),
        "other_gap_ms_max": other_gap_max,
        "query_ok": query_ok,
        "delete_ok": delete_ok,
        "loadavg": crate::procstat::loadavg(),
    }))
}
