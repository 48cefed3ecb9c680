//! RTP with per-flow gap detection, around a relay that is killed. Every
//! flow (one direction of one session) sends its own packets (SSRC = flow
//! index, sequence numbers counting up) at a fixed rate; the receiver notes
//! per flow when packets arrive, so the gap each flow sees when its relay
//! dies — and whether it comes back — is measured.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use crate::traffic::Plan;

const BATCH: usize = 64;

/// What each flow saw.
#[derive(Debug, Clone, Default)]
pub struct FlowReport {
    /// Packets sent, all flows.
    pub sent: u64,
    /// Packets received, all flows.
    pub received: u64,
    /// Per flow: packets received before the kill.
    pub before: Vec<u64>,
    /// Per flow: packets received after the kill.
    pub after: Vec<u64>,
    /// Per flow: from the kill to the first packet after it.
    pub resume: Vec<Option<Duration>>,
    /// Per flow: the gap across the kill (last packet before it to the
    /// first after it).
    pub kill_gap: Vec<Option<Duration>>,
    /// Per flow: the longest gap between two packets outside the kill gap.
    pub other_gap: Vec<Duration>,
    /// Per flow: time from its last packet to the end of sending.
    pub silent_at_end: Vec<Option<Duration>>,
}

/// Sends for `before`, calls `kill`, sends for `after`, then drains
/// 300 ms.
pub fn run(
    plan: &Plan,
    pps: u32,
    size: usize,
    before: Duration,
    after: Duration,
    kill: impl FnOnce(),
) -> anyhow::Result<FlowReport> {
    let n = plan.flows.len();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in plan.sockets.iter().enumerate() {
        epoll.add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut packets: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut p = vec![0xd5u8; size.max(12)];
            p[..8].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
            p[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            p
        })
        .collect();
    let slices = 20usize;
    let slice_len = Duration::from_secs_f64(1.0 / f64::from(pps.max(1))) / slices as u32;
    let per_slice = n.div_ceil(slices).max(1);
    let mut rbufs = vec![[0u8; 2048]; BATCH];
    let mut rh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut sh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut events = vec![EpollEvent::empty(); 256];
    let mut r = FlowReport {
        before: vec![0; n],
        after: vec![0; n],
        resume: vec![None; n],
        kill_gap: vec![None; n],
        other_gap: vec![Duration::ZERO; n],
        silent_at_end: vec![None; n],
        ..FlowReport::default()
    };
    let mut last: Vec<Option<Instant>> = vec![None; n];
    let start = Instant::now();
    let kill_at = start + before;
    let end = kill_at + after;
    let drain_until = end + Duration::from_millis(300);
    let mut killed: Option<Instant> = None;
    let mut kill = Some(kill);
    let (mut next_slice, mut slice, mut seq) = (start, 0usize, 0u16);
    loop {
        let now = Instant::now();
        if killed.is_none() && now >= kill_at {
            if let Some(k) = kill.take() {
                k();
            }
            killed = Some(Instant::now());
        }
        if now >= drain_until {
            break;
        }
        if now < end && now >= next_slice {
            let from = slice * per_slice;
            let to = (from + per_slice).min(n);
            for p in packets.iter_mut().take(to).skip(from) {
                p[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            for (si, sock) in plan.sockets.iter().enumerate() {
                let mine: Vec<usize> = (from..to)
                    .filter(|&f| plan.flows.get(f).is_some_and(|(s, _)| *s == si))
                    .collect();
                for chunk in mine.chunks(BATCH) {
                    let iovs: Vec<[IoSlice<'_>; 1]> =
                        chunk.iter().map(|&f| [IoSlice::new(&packets[f])]).collect();
                    let dests: Vec<Option<SockaddrStorage>> = chunk
                        .iter()
                        .map(|&f| Some(SockaddrStorage::from(plan.flows[f].1)))
                        .collect();
                    if let Ok(res) = sendmmsg(
                        sock.as_raw_fd(),
                        &mut sh,
                        iovs.iter(),
                        &dests,
                        [],
                        MsgFlags::MSG_DONTWAIT,
                    ) {
                        r.sent += res.count() as u64;
                    }
                }
            }
            slice += 1;
            if slice == slices {
                slice = 0;
                seq = seq.wrapping_add(1);
            }
            next_slice += slice_len;
        }
        let wait = u16::try_from(
            next_slice
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(2),
        )
        .unwrap_or(0);
        let ready = epoll.wait(&mut events, EpollTimeout::from(wait))?;
        for ev in events.iter().take(ready) {
            let Some(s) = plan.sockets.get(ev.data() as usize) else {
                continue;
            };
            for _ in 0..16 {
                let mut lens = [0usize; BATCH];
                let k = {
                    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = rbufs
                        .iter_mut()
                        .map(|b| [IoSliceMut::new(&mut b[..])])
                        .collect();
                    match recvmmsg(
                        s.as_raw_fd(),
                        &mut rh,
                        iovs.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(res) => {
                            let mut k = 0;
                            for (i, m) in res.enumerate() {
                                lens[i] = m.bytes;
                                k = i + 1;
                            }
                            k
                        }
                        Err(_) => 0,
                    }
                };
                let t = Instant::now();
                for (buf, len) in rbufs.iter().zip(lens.iter()).take(k) {
                    if *len < 12 {
                        continue;
                    }
                    let f = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
                    if f >= n {
                        continue;
                    }
                    r.received += 1;
                    match killed {
                        Some(kt) if t >= kt => {
                            r.after[f] += 1;
                            if r.resume[f].is_none() {
                                r.resume[f] = Some(t - kt);
                                r.kill_gap[f] = last[f].map(|l| t - l);
                            } else if let Some(l) = last[f] {
                                r.other_gap[f] = r.other_gap[f].max(t - l);
                            }
                        }
                        _ => {
                            r.before[f] += 1;
                            if let Some(l) = last[f] {
                                r.other_gap[f] = r.other_gap[f].max(t - l);
                            }
                        }
                    }
                    last[f] = Some(t);
                }
                if k < BATCH {
                    break;
                }
            }
        }
    }
    r.silent_at_end = last
        .iter()
        .map(|l| l.map(|l| end.saturating_duration_since(l)))
        .collect();
    Ok(r)
}

/// The value at quantile `q` (0–1) of `v` (sorted in place); None if empty.
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

/// Flow indexes of session `s` (two flows per session, as set up).
pub fn flows_of(s: usize) -> [usize; 2] {
    [2 * s, 2 * s + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 1.0), Some(5.0));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(flows_of(3), [6, 7]);
    }
}
