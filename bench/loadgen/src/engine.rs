//! The I/O side: one single-threaded event loop per thread, with its own sockets, driving
//! the sans-IO [`Uac`] and [`Uas`] with the clock, paced flow starts and batched datagrams.

use crate::digest::Algorithm;
use crate::message;
use crate::outbox::{Leg, Outbox};
use crate::socket::{BATCH, BatchIo, connected, send_leg};
use crate::stats::{Counters, Report, Stats};
use crate::template::TemplateError;
use crate::uac::{CallOptions, Scenario, Timing, Uac, UacConfig};
use crate::uas::{Uas, UasConfig};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MultiHeaders, SockaddrStorage};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How new flows are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Open loop: this many new flows per second, whatever the replies.
    Rate(f64),
    /// Closed loop: keep this many flows outstanding.
    Concurrency(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// The only address datagrams are sent to.
    pub target: SocketAddr,
    /// Local address to bind (port 0 is used).
    pub bind: IpAddr,
    /// Load shape.
    pub shape: Shape,
    /// Length of the measurement window after warm-up.
    pub duration: Duration,
    /// Warm-up before the window (flows run, counts are not kept).
    pub warmup: Duration,
    /// Stop starting flows after this many (all threads together).
    pub count: Option<u64>,
    /// Longest wait for open flows after the window.
    pub drain: Duration,
    /// Event-loop threads, each with its own sockets and share of the load.
    pub threads: usize,
    /// Distinct users (`u%08d`).
    pub users: u32,
    /// Callees registered by the called side (`c%08d`, call scenario).
    pub callees: u32,
    /// SIP domain.
    pub domain: String,
    /// REGISTER Expires.
    pub expires: u32,
    /// Password or pattern (`{user}` is replaced by the user name).
    pub password: Option<String>,
    /// Preferred digest algorithm.
    pub algorithm: Algorithm,
    /// Timer values.
    pub timing: Timing,
    /// Maximum flows outstanding (all threads together).
    pub max_outstanding: u32,
    /// Called side sends 100 Trying before 180/200.
    pub send_trying: bool,
    /// Callee registrations kept outstanding at once.
    pub register_concurrency: u32,
    /// Thread `i` binds the address `bind + i` (127.0.0.1, 127.0.0.2, ...
    /// on loopback), so the load comes from as many sources as threads.
    pub source_per_thread: bool,
    /// Call scenario: SDP offer/answer, held calls, media addresses recorded.
    pub call: CallOptions,
}

impl RunConfig {
    /// Defaults for `scenario` against `target`: 10 s window, no warm-up, 1 thread,
    /// closed loop of 100, 1,000 users, 100 callees, domain `localhost`.
    pub fn new(scenario: Scenario, target: SocketAddr) -> RunConfig {
        RunConfig {
            scenario,
            target,
            bind: if target.is_ipv4() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            },
            shape: Shape::Concurrency(100),
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            count: None,
            drain: Duration::from_secs(5),
            threads: 1,
            users: 1000,
            callees: 100,
            domain: "localhost".to_string(),
            expires: 3600,
            password: None,
            algorithm: Algorithm::Md5,
            timing: Timing::default(),
            max_outstanding: 100_000,
            send_trying: true,
            register_concurrency: 200,
            source_per_thread: false,
            call: CallOptions::default(),
        }
    }
}

/// Why a run could not be done.
#[derive(Debug, Error)]
pub enum RunError {
    /// A socket could not be set up or used.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// A batched socket call failed.
    #[error("socket call: {0}")]
    Sys(#[from] nix::errno::Errno),
    /// A request template is invalid (e.g. a domain with braces).
    #[error("template: {0}")]
    Template(#[from] TemplateError),
    /// The called side could not register all its callees.
    #[error(
        "callee registration: {registered} of {wanted} registered ({failed} failed, {timed_out} timed out)"
    )]
    CalleeRegistration {
        /// Registered.
        registered: u64,
        /// Wanted.
        wanted: u64,
        /// Failed (unexpected final response).
        failed: u64,
        /// Timed out.
        timed_out: u64,
    },
    /// A thread panicked.
    #[error("engine thread panicked")]
    ThreadPanicked,
}

#[derive(Debug, Clone, Copy)]
struct Share {
    index: usize,
    shape: Shape,
    count: Option<u64>,
    first_user: u32,
    users: u32,
    first_callee: u32,
    callees: u32,
    slots: u32,
}

fn split(total: u64, parts: usize, index: usize) -> (u64, u64) {
    let parts = parts.max(1) as u64;
    let i = index as u64;
    let base = total / parts;
    let rem = total % parts;
    let first = i * base + i.min(rem);
    (first, base + u64::from(i < rem))
}

struct ThreadResult {
    at_start: Counters,
    at_end: Counters,
    stats: Stats,
    unfinished: u64,
    window_s: f64,
    window_cpu_s: f64,
    media: Vec<(SocketAddr, SocketAddr)>,
}

/// Runs the configured load and returns the merged report.
pub fn run(cfg: &RunConfig) -> Result<Report, RunError> {
    let threads = cfg.threads.max(1);

    let run_id = std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8);
    let shares: Vec<Share> = (0..threads)
        .map(|i| {
            let (fu, nu) = split(u64::from(cfg.users.max(1)), threads, i);
            let (fc, nc) = split(u64::from(cfg.callees.max(1)), threads, i);
            let shape = match cfg.shape {
                Shape::Rate(r) => Shape::Rate(r / threads as f64),
                Shape::Concurrency(c) => Shape::Concurrency(split(c, threads, i).1.max(1)),
            };
            Share {
                index: i,
                shape,
                count: cfg.count.map(|c| split(c, threads, i).1),
                first_user: fu as u32,
                users: nu.max(1) as u32,
                first_callee: fc as u32,
                callees: nc.max(1) as u32,
                slots: (split(u64::from(cfg.max_outstanding), threads, i).1.max(1)) as u32,
            }
        })
        .collect();
    let results: Vec<Result<ThreadResult, RunError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = shares
            .iter()
            .map(|sh| sc.spawn(move || run_thread(cfg, *sh, run_id)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RunError::ThreadPanicked)))
            .collect()
    });
    let mut at_start = Counters::default();
    let mut at_end = Counters::default();
    let mut stats = Stats::new();
    let mut unfinished = 0;
    let mut window_s: f64 = 0.0;
    let mut window_cpu = 0.0;
    let mut media = Vec::new();
    for r in results {
        let mut r = r?;
        media.append(&mut r.media);
        at_start.add(&r.at_start);
        at_end.add(&r.at_end);
        stats.merge(&r.stats);
        unfinished += r.unfinished;
        window_s = window_s.max(r.window_s);
        window_cpu += r.window_cpu_s;
    }
    let (rate, concurrency) = match cfg.shape {
        Shape::Rate(r) => (Some(r), None),
        Shape::Concurrency(c) => (None, Some(c)),
    };
    let mut report = Report::build(
        cfg.scenario.name(),
        &cfg.target.to_string(),
        threads,
        rate,
        concurrency,
        window_s,
        &at_start,
        &at_end,
        &stats,
        unfinished,
    );
    report.generator_cpu_s = window_cpu;
    report.media_pairs = media;
    report.generator_cpu_pct = if window_s > 0.0 {
        100.0 * window_cpu / window_s / threads as f64
    } else {
        0.0
    };
    Ok(report)
}

/// User plus system CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// The event loop's sockets and buffers.
struct Loop {
    clock: Instant,
    uac_sock: UdpSocket,
    uas_sock: Option<UdpSocket>,
    rx: BatchIo,
    tx_headers: MultiHeaders<SockaddrStorage>,
    out: Outbox,
    send_failures: u64,
}

impl Loop {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.send_failures += send_leg(&self.uac_sock, &mut self.tx_headers, &self.out, Leg::Uac);
        if let Some(s) = &self.uas_sock {
            self.send_failures += send_leg(s, &mut self.tx_headers, &self.out, Leg::Uas);
        }
        self.out.clear();
    }

    /// Waits up to `timeout_us` for datagrams, then hands every datagram received to
    /// `on_uac` / `on_uas` (flushing replies as batches fill).
    fn wait_and_receive(
        &mut self,
        timeout_us: u64,
        on_uac: &mut dyn FnMut(u64, &[u8], &mut Outbox),
        on_uas: &mut dyn FnMut(u64, &[u8], &mut Outbox),
    ) -> Result<(), RunError> {
        let ms = timeout_us.div_ceil(1000).min(100) as u16;
        let (uac_ready, uas_ready) = {
            let mut fds = [
                PollFd::new(self.uac_sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(
                    self.uas_sock.as_ref().unwrap_or(&self.uac_sock).as_fd(),
                    PollFlags::POLLIN,
                ),
            ];
            let n = if self.uas_sock.is_some() { 2 } else { 1 };
            match poll(&mut fds[..n], PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd<'_>| {
                f.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            (ready(&fds[0]), n == 2 && ready(&fds[1]))
        };
        if uac_ready {
            self.drain_socket(Leg::Uac, on_uac)?;
        }
        if uas_ready {
            self.drain_socket(Leg::Uas, on_uas)?;
        }
        Ok(())
    }

    fn drain_socket(
        &mut self,
        leg: Leg,
        handle: &mut dyn FnMut(u64, &[u8], &mut Outbox),
    ) -> Result<(), RunError> {
        for _ in 0..16 {
            let sock = match leg {
                Leg::Uac => &self.uac_sock,
                Leg::Uas => match &self.uas_sock {
                    Some(s) => s,
                    None => return Ok(()),
                },
            };
            let n = match self.rx.recv(sock) {
                Ok(n) => n,
                // ICMP errors on a connected socket: the server is not (yet) there.
                Err(nix::errno::Errno::ECONNREFUSED) => continue,
                Err(e) => return Err(e.into()),
            };
            let now = self.now();
            for (data, _) in self.rx.received() {
                handle(now, data, &mut self.out);
            }
            if self.out.len() >= BATCH {
                self.flush();
            }
            if n < BATCH {
                break;
            }
        }
        Ok(())
    }
}

/// The address of thread `index`: `base + index` (last octet or segment).
pub fn source_address(base: IpAddr, index: usize) -> IpAddr {
    let i = index as u128;
    match base {
        IpAddr::V4(v4) => IpAddr::from(std::net::Ipv4Addr::from(
            u32::from(v4).wrapping_add(i as u32),
        )),
        IpAddr::V6(v6) => IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6).wrapping_add(i))),
    }
}

fn run_thread(cfg: &RunConfig, sh: Share, run_id: u32) -> Result<ThreadResult, RunError> {
    let ip = if cfg.source_per_thread {
        source_address(cfg.bind, sh.index)
    } else {
        cfg.bind
    };
    let bind = SocketAddr::new(ip, 0);
    let uac_sock = connected(bind, cfg.target)?;
    let uas_sock = if cfg.scenario == Scenario::Call {
        Some(connected(bind, cfg.target)?)
    } else {
        None
    };
    let mut lp = Loop {
        clock: Instant::now(),
        uac_sock,
        uas_sock,
        rx: BatchIo::new(),
        tx_headers: MultiHeaders::preallocate(BATCH, None),
        out: Outbox::new(),
        send_failures: 0,
    };
    let uac_cfg = UacConfig {
        scenario: cfg.scenario,
        domain: cfg.domain.clone(),
        local: lp.uac_sock.local_addr()?,
        user_prefix: "u".to_string(),
        first_user: sh.first_user,
        users: sh.users,
        first_callee: sh.first_callee,
        callees: sh.callees,
        expires: cfg.expires,
        password: cfg.password.clone(),
        algorithm: cfg.algorithm,
        timing: cfg.timing,
        slots: sh.slots,
        run_id: run_id.wrapping_add(sh.index as u32),
        leg: Leg::Uac,
    };
    let mut uas = None;
    let mut unregister = None;
    if let Some(s) = &lp.uas_sock {
        let uas_local = s.local_addr()?;
        let reg_cfg = UacConfig {
            scenario: Scenario::Register,
            local: uas_local,
            user_prefix: "c".to_string(),
            first_user: sh.first_callee,
            users: sh.callees,
            slots: cfg.register_concurrency.max(1),
            run_id: run_id.wrapping_add(0x8000 + sh.index as u32),
            leg: Leg::Uas,
            ..uac_cfg.clone()
        };
        register_callees(&mut lp, reg_cfg.clone(), cfg)?;
        unregister = Some(reg_cfg);
        let mut u = Uas::new(UasConfig {
            slots: sh.slots,
            timing: cfg.timing,
            send_trying: cfg.send_trying,
        });
        let answer_at = if cfg.call.sdp { Some(uas_local) } else { None };
        u.set_media(answer_at, cfg.call.record_media);
        uas = Some(u);
    }
    let mut uac = Uac::new(uac_cfg)?;
    uac.set_call_options(cfg.call);

    let t0 = lp.now();
    let warm_end = t0 + cfg.warmup.as_micros() as u64;
    let mut end = warm_end + cfg.duration.as_micros() as u64;
    let drain_us = cfg.drain.as_micros() as u64;
    let mut started: u64 = 0;
    let mut at_start: Option<Counters> = None;
    let mut at_end: Option<Counters> = None;
    let mut cpu_start = thread_cpu_seconds();
    let mut cpu_end: Option<f64> = None;
    let snapshot = |uac: &Uac, uas: &Option<Uas>| {
        let mut c = uac.stats.counters;
        if let Some(u) = uas {
            c.add(&u.counters);
        }
        c
    };
    loop {
        let now = lp.now();
        if at_start.is_none() && now >= warm_end {
            at_start = Some(snapshot(&uac, &uas));
            cpu_start = thread_cpu_seconds();
            uac.stats.reset_latencies();
        }
        let count_done = sh.count.is_some_and(|c| started >= c);
        if at_end.is_none() && (now >= end || (count_done && uac.outstanding() == 0)) {
            at_end = Some(snapshot(&uac, &uas));
            cpu_end = Some(thread_cpu_seconds());
            end = end.min(now);
        }
        if now < end && !count_done {
            let due = match sh.shape {
                Shape::Rate(r) => {
                    let target = ((now - t0) as f64 * r / 1e6) as u64;
                    target.saturating_sub(started).min(4096)
                }
                Shape::Concurrency(c) => c.saturating_sub(uac.outstanding() as u64),
            };
            let due = sh.count.map_or(due, |c| due.min(c.saturating_sub(started)));
            for _ in 0..due {
                uac.start_flow(now, &mut lp.out);
                started += 1;
                if lp.out.len() >= BATCH {
                    lp.flush();
                }
            }
        }
        uac.on_timers(now, &mut lp.out);
        if let Some(u) = &mut uas {
            u.on_timers(now, &mut lp.out);
        }
        lp.flush();
        if at_end.is_some() && (uac.outstanding() == 0 || now >= end.saturating_add(drain_us)) {
            break;
        }
        let mut next = end.saturating_add(drain_us);
        if now < end {
            next = next.min(end);
            if now < warm_end {
                next = next.min(warm_end);
            }
            if matches!(sh.shape, Shape::Rate(_)) {
                next = next.min(now + 1000);
            }
        }
        if let Some(d) = uac.next_deadline() {
            next = next.min(d);
        }
        if let Some(d) = uas.as_ref().and_then(Uas::next_deadline) {
            next = next.min(d);
        }
        let timeout = next.saturating_sub(now);
        let mut on_uac = |t: u64, d: &[u8], o: &mut Outbox| uac.on_datagram(t, d, o);
        let mut on_uas = |t: u64, d: &[u8], o: &mut Outbox| match (&mut uas, message::parse(d)) {
            (Some(u), Ok(m)) if m.status().is_none() => u.on_request(t, &m, o),
            (Some(u), Ok(_)) => u.counters.duplicate_replies += 1,
            (Some(u), Err(_)) => u.counters.parse_errors += 1,
            (None, _) => {}
        };
        lp.wait_and_receive(timeout, &mut on_uac, &mut on_uas)?;
        lp.flush();
    }
    let final_now = lp.now();
    // The callees leave as phones do when they shut down (Expires: 0), so
    // that the next run's callees, on other ports, are the only contacts:
    // otherwise the server forks every call to this run's dead sockets too.
    if let Some(reg_cfg) = unregister {
        let reg_cfg = UacConfig {
            expires: 0,
            run_id: reg_cfg.run_id.wrapping_add(0x4000),
            ..reg_cfg
        };
        if let Err(e) = register_callees(&mut lp, reg_cfg, cfg) {
            eprintln!("callees not all unregistered: {e}");
        }
    }
    let at_start = at_start.unwrap_or_else(|| snapshot(&uac, &uas));
    let at_end = at_end.unwrap_or_else(|| snapshot(&uac, &uas));
    let mut stats = uac.stats.clone();
    if let Some(u) = &uas {
        stats.counters.add(&u.counters);
    }
    stats.counters.send_errors += lp.send_failures;
    let window_end = end.min(final_now);
    // Pairs (where the caller sends its media, where the callee sends its media) of the
    // calls whose offer reached the callee and whose answer reached the caller.
    let mut media = Vec::new();
    if cfg.call.record_media
        && let Some(u) = &uas
    {
        let offers: std::collections::HashMap<(u32, u32), SocketAddr> =
            u.media.iter().map(|&(s, f, a)| ((s, f), a)).collect();
        for &(s, f, to_callee) in &uac.media {
            if let Some(&to_caller) = offers.get(&(s, f)) {
                media.push((to_callee, to_caller));
            }
        }
    }
    Ok(ThreadResult {
        at_start,
        at_end,
        stats,
        unfinished: uac.outstanding() as u64,
        window_s: window_end.saturating_sub(warm_end) as f64 / 1e6,
        window_cpu_s: cpu_end.unwrap_or_else(thread_cpu_seconds) - cpu_start,
        media,
    })
}

/// Registers the callees of this thread (closed loop) before calls begin.
fn register_callees(lp: &mut Loop, reg_cfg: UacConfig, cfg: &RunConfig) -> Result<(), RunError> {
    let wanted = u64::from(reg_cfg.users);
    let concurrency = u64::from(reg_cfg.slots);
    let mut reg = Uac::new(reg_cfg)?;
    let mut started = 0u64;
    let deadline = lp.now() + cfg.timing.timeout_us + 5_000_000 + wanted * 1_000;
    loop {
        let now = lp.now();
        while started < wanted && (reg.outstanding() as u64) < concurrency {
            reg.start_flow(now, &mut lp.out);
            started += 1;
        }
        reg.on_timers(now, &mut lp.out);
        lp.flush();
        if (started >= wanted && reg.outstanding() == 0) || now >= deadline {
            break;
        }
        let timeout = reg
            .next_deadline()
            .map_or(100_000, |d| d.saturating_sub(now))
            .min(100_000);
        let mut on_uas = |t: u64, d: &[u8], o: &mut Outbox| reg.on_datagram(t, d, o);
        let mut ignore = |_: u64, _: &[u8], _: &mut Outbox| {};
        lp.wait_and_receive(timeout, &mut ignore, &mut on_uas)?;
        lp.flush();
    }
    let c = &reg.stats.counters;
    if c.flows_completed < wanted {
        return Err(RunError::CalleeRegistration {
            registered: c.flows_completed,
            wanted,
            failed: c.flows_failed,
            timed_out: c.flows_timed_out,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_sources() {
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(source_address(b, 0), b);
        assert_eq!(source_address(b, 9).to_string(), "127.0.0.10");
        let b6: IpAddr = "::1".parse().unwrap();
        assert_eq!(source_address(b6, 2).to_string(), "::3");
    }

    #[test]
    fn splits_evenly_with_remainder_first() {
        assert_eq!(split(10, 3, 0), (0, 4));
        assert_eq!(split(10, 3, 1), (4, 3));
        assert_eq!(split(10, 3, 2), (7, 3));
        assert_eq!(split(5, 1, 0), (0, 5));
    }
}
