//! RTP traffic: every endpoint socket sends 172-byte RTP at a fixed rate to
//! its relay port and counts what arrives. One thread, paced in 1 ms slices,
//! epoll + recvmmsg for receiving.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// One endpoint: its socket and the relay address it sends to.
pub struct Endpoint {
    /// Bound local socket (non-blocking).
    pub socket: UdpSocket,
    /// Relay port it sends RTP to.
    pub dest: SocketAddr,
}

/// Counters over a measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Packets sent (syscall succeeded).
    pub sent: u64,
    /// Packets the kernel refused (socket buffer full).
    pub send_errors: u64,
    /// Packets received.
    pub received: u64,
    /// Window length.
    pub seconds: f64,
}

/// Sends `pps` packets/s from every endpoint of `size` bytes for
/// `warmup + duration`, returning the counters of the `duration` part.
/// `on_window` is called at the start and end of the measured window.
pub fn run(
    endpoints: &[Endpoint],
    pps: u32,
    size: usize,
    warmup: Duration,
    duration: Duration,
    mut on_window: impl FnMut(bool),
) -> anyhow::Result<Window> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, e) in endpoints.iter().enumerate() {
        epoll.add(e.socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut pkt = vec![0u8; size.max(12)];
    pkt[0] = 0x80;
    let interval = Duration::from_secs_f64(1.0 / f64::from(pps.max(1)));
    let slices = 20usize; // per packet interval
    let per_slice = endpoints.len().div_ceil(slices);
    let slice_len = interval / slices as u32;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut next_slice = start;
    let mut slice = 0usize;
    let mut seq: u16 = 0;
    let (mut sent, mut errs, mut recv) = (0u64, 0u64, 0u64);
    let mut at_window: Option<(u64, u64, u64, Instant)> = None;
    let mut bufs = vec![[0u8; 2048]; 32];
    let mut hdrs: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(32, None);
    let mut events = vec![EpollEvent::empty(); 1024];
    let drain_until = end + Duration::from_millis(300);
    let mut ended = false;
    loop {
        let now = Instant::now();
        if at_window.is_none() && now >= window_start {
            at_window = Some((sent, errs, recv, now));
            on_window(true);
        }
        if !ended && now >= end {
            ended = true;
            on_window(false);
        }
        if now >= drain_until {
            break;
        }
        // Send every due slice.
        while now < end && now >= next_slice {
            let from = slice * per_slice;
            let to = (from + per_slice).min(endpoints.len());
            if from < to {
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                for (i, e) in endpoints.iter().enumerate().take(to).skip(from) {
                    pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
                    match e.socket.send_to(&pkt, e.dest) {
                        Ok(_) => sent += 1,
                        Err(_) => errs += 1,
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
        let wait_ms = if now >= end { 10 } else { next_slice.saturating_duration_since(Instant::now()).as_millis().min(5) as u16 };
        let n = epoll.wait(&mut events, EpollTimeout::from(wait_ms))?;
        for ev in events.iter().take(n) {
            let Some(e) = endpoints.get(ev.data() as usize) else { continue };
            loop {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
                match recvmmsg(e.socket.as_raw_fd(), &mut hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
                    Ok(res) => {
                        let k = res.count() as u64;
                        recv += k;
                        if k < 32 {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
    let (s0, e0, r0, t0) = at_window.unwrap_or((0, 0, 0, start));
    // Packets sent during the window; receives counted through the drain.
    let seconds = end.saturating_duration_since(t0).as_secs_f64();
    Ok(Window {
        sent: sent - s0,
        send_errors: errs - e0,
        received: recv - r0,
        seconds,
    })
}
