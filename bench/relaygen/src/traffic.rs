//! RTP traffic. Every flow (one direction of one stream) sends 172-byte RTP
//! at a fixed rate to its relay port. Flows share a small pool of generator
//! sockets (the relay still sees one stream per port and latches each one),
//! so the generator can batch with `sendmmsg`/`recvmmsg` and stay ahead of the
//! system under test on its single core. Paced in 1 ms slices.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

const BATCH: usize = 64;

/// Generator sockets and flows (socket index, relay port to send to).
pub struct Plan {
    /// Bound, non-blocking sockets.
    pub sockets: Vec<UdpSocket>,
    /// One entry per flow.
    pub flows: Vec<(usize, SocketAddr)>,
}

impl Plan {
    /// `n` sockets on 127.0.0.1 with large buffers.
    pub fn with_sockets(n: usize) -> anyhow::Result<Plan> {
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            let _ = s.set_recv_buffer_size(4 << 20);
            let _ = s.set_send_buffer_size(4 << 20);
            s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            s.set_nonblocking(true)?;
            sockets.push(UdpSocket::from(s));
        }
        Ok(Plan {
            sockets,
            flows: Vec::new(),
        })
    }
}

/// Counters over the measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Packets sent.
    pub sent: u64,
    /// Packets the kernel refused.
    pub send_errors: u64,
    /// Packets received.
    pub received: u64,
    /// Window length.
    pub seconds: f64,
    /// Slices sent late by more than one slice (generator overloaded).
    pub late_slices: u64,
}

/// Runs `warmup + duration`; counts the `duration` part (receives are
/// counted until 300 ms after the last send). `on_window(true/false)` marks
/// the start and end of the measured window.
pub fn run(
    plan: &Plan,
    pps: u32,
    size: usize,
    warmup: Duration,
    duration: Duration,
    mut on_window: impl FnMut(bool),
) -> anyhow::Result<Window> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in plan.sockets.iter().enumerate() {
        epoll.add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut pkt = vec![0xd5u8; size.max(12)];
    pkt[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x42, 0x42, 0x42, 0x42]);
    let slices = 20usize;
    let slice_len = Duration::from_secs_f64(1.0 / f64::from(pps.max(1))) / slices as u32;
    let per_slice = plan.flows.len().div_ceil(slices);
    let mut by_socket: Vec<Vec<Option<SockaddrStorage>>> = vec![Vec::new(); plan.sockets.len()];
    let mut rbufs = vec![[0u8; 2048]; BATCH];
    let mut rh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut sh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut events = vec![EpollEvent::empty(); 256];
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let drain_until = end + Duration::from_millis(300);
    let (mut next_slice, mut slice, mut seq) = (start, 0usize, 0u16);
    let (mut sent, mut errs, mut recv, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut at_window: Option<(u64, u64, u64, Instant)> = None;
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
        // At most one slice per turn, so receiving is never starved.
        if now < end && now >= next_slice {
            if now >= next_slice + slice_len * 2 {
                late += 1;
            }
            let from = slice * per_slice;
            let to = (from + per_slice).min(plan.flows.len());
            for v in &mut by_socket {
                v.clear();
            }
            for (sock, dest) in plan.flows.iter().take(to).skip(from) {
                if let Some(v) = by_socket.get_mut(*sock) {
                    v.push(Some(SockaddrStorage::from(*dest)));
                }
            }
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            for (i, dests) in by_socket.iter().enumerate() {
                let Some(sock) = plan.sockets.get(i) else {
                    continue;
                };
                for chunk in dests.chunks(BATCH) {
                    let iovs: Vec<[IoSlice<'_>; 1]> =
                        chunk.iter().map(|_| [IoSlice::new(&pkt)]).collect();
                    match sendmmsg(
                        sock.as_raw_fd(),
                        &mut sh,
                        iovs.iter(),
                        chunk,
                        [],
                        MsgFlags::MSG_DONTWAIT,
                    ) {
                        Ok(r) => {
                            let n = r.count() as u64;
                            sent += n;
                            errs += chunk.len() as u64 - n;
                        }
                        Err(_) => errs += chunk.len() as u64,
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
        let wait = if now >= end {
            5
        } else {
            u16::try_from(
                next_slice
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(2),
            )
            .unwrap_or(0)
        };
        let n = epoll.wait(&mut events, EpollTimeout::from(wait))?;
        for ev in events.iter().take(n) {
            let Some(s) = plan.sockets.get(ev.data() as usize) else {
                continue;
            };
            for _ in 0..16 {
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
                        let k = res.count();
                        recv += k as u64;
                        if k < BATCH {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
    let (s0, e0, r0, t0) = at_window.unwrap_or((0, 0, 0, start));
    Ok(Window {
        sent: sent - s0,
        send_errors: errs - e0,
        received: recv - r0,
        seconds: end.saturating_duration_since(t0).as_secs_f64(),
        late_slices: late,
    })
}
