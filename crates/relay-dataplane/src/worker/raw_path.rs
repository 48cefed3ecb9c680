//! The worker's raw I/O path: which streams it serves, and the batch loop
//! (route each datagram to its stream by destination, apply the stream's
//! policy, write the outgoing headers in place, send the batch).

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use socket2::SockFilter;

use super::{MAX_BATCHES_PER_TURN, NO_SLOT, Worker, bump, send_one};
use crate::raw::{self, HEADERS, Outgoing, Sent};
use crate::rtp::PacketClass;
use crate::{RAW_BATCH, raw_partition};

/// `ret #0`: the stream's own socket drops everything (the raw socket has
/// its copy).
const DROP_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0)];

impl Worker {
    /// Whether a stream bound to `local` is served through raw I/O: raw
    /// I/O configured, an even (RTP) port in the range and in this worker's
    /// partition.
    pub(super) fn serves_raw(&self, local: SocketAddrV4) -> bool {
        let Some(raw) = self.raw.as_ref() else {
            return false;
        };
        let port = local.port();
        port.is_multiple_of(2)
            && (raw.port_min..=raw.port_max).contains(&port)
            && raw_partition(port, raw.partitions) == self.index
    }

    /// The first datagram of a raw-served stream reached its own socket too:
    /// from now on the socket drops what it receives (a socket filter), and
    /// what it holds is discarded (the raw socket has its copies). Done at
    /// the first datagram rather than when the stream is added, because
    /// attaching a filter costs ~5 µs (the kernel compiles it), which ng
    /// set-up would pay for streams that may never see media. If the filter
    /// cannot be attached the stream is served by its socket instead.
    pub(super) fn seal(&mut self, slot: usize) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if let Err(e) = socket2::SockRef::from(&s.socket).attach_filter(&DROP_ALL) {
            tracing::warn!(error = %e, local = ?s.local_v4, "socket filter failed; stream served by its socket");
            s.raw = false;
            if let (Some(raw), Some(local)) = (self.raw.as_mut(), s.local_v4) {
                raw.routes.remove(&local);
            }
            return;
        }
        s.sealed = true;
        let _ = self.epoll.delete(s.socket.as_fd());
        while self.receive(slot, crate::BATCH) == crate::BATCH {}
    }

    /// Reads the raw socket: up to [`MAX_BATCHES_PER_TURN`] batches; what
    /// is left wakes the next turn (the socket is level-triggered).
    pub(super) fn on_raw_readable(&mut self, now_ms: u64) {
        for _ in 0..MAX_BATCHES_PER_TURN {
            let received = match self.raw.as_mut() {
                Some(raw) => raw.io.receive(),
                None => return,
            };
            if received > 0 {
                self.relay_raw_batch(received, now_ms);
            }
            if received < RAW_BATCH {
                return;
            }
        }
    }

    /// Routes, admits, counts and forwards a batch read from the raw socket.
    fn relay_raw_batch(&mut self, received: usize, now_ms: u64) {
        let Some(mut raw) = self.raw.take() else {
            return;
        };
        let mut unrouted = 0u64;
        for i in 0..received {
            let len = raw.io.lens.get(i).copied().unwrap_or(0);
            let Some(d) = raw
                .io
                .bufs
                .get(i)
                .and_then(|b| raw::parse(b.get(..len).unwrap_or_default()))
            else {
                unrouted += 1;
                continue;
            };
            let Some(slot) = raw.routes.get(&d.dst).map(|&s| s as usize) else {
                unrouted += 1;
                continue;
            };
            if self.standby_traffic(slot, 1) {
                continue;
            }
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                unrouted += 1;
                continue;
            };
            if d.truncated {
                bump(&s.counters.errors, 1);
                continue;
            }
            let data = raw.io.received(i, &d);
            let Some(class) = s.admit(SocketAddr::V4(d.src), data) else {
                bump(&s.counters.errors, 1);
                continue;
            };
            let c = &s.counters;
            bump(&c.packets, 1);
            bump(&c.bytes, data.len() as u64);
            c.last_packet_ms.store(now_ms, Ordering::Relaxed);
            let (sink_rtp, sink_rtcp) = s.sinks(self.epoch, &self.by_key);
            let sink = if class == PacketClass::Rtcp {
                sink_rtcp
            } else {
                sink_rtp
            };
            let Some(Some(out)) = self.slots.get(sink as usize) else {
                continue;
            };
            let Some(to) = out.destination() else {
                continue;
            };
            let written = match (out.local_v4, to) {
                (Some(from), SocketAddr::V4(to)) => raw.io.bufs.get_mut(i).and_then(|b| {
                    raw::write_headers(b, d.payload, d.end, from, to, out.config.tos)
                        .map(|start| (start, to))
                }),
                _ => None,
            };
            match written {
                Some((start, to)) => raw.io.queue(
                    Outgoing {
                        buf: i,
                        start,
                        end: d.end,
                        from: u32::try_from(slot).unwrap_or(NO_SLOT),
                        sink,
                    },
                    to,
                ),
                // An IPv6 destination (or a sink without an IPv4 address):
                // out of the sink's own socket.
                None => {
                    let data = raw.io.received(i, &d);
                    let ok = send_one(out, to, data);
                    if let Some(Some(s)) = self.slots.get(slot) {
                        bump(
                            if ok {
                                &s.counters.sent
                            } else {
                                &s.counters.errors
                            },
                            1,
                        );
                    }
                }
            }
        }
        let slots = &self.slots;
        let mut raw_sent = 0u64;
        raw.io.flush(|io, o, sent| {
            let Some(Some(from)) = slots.get(o.from as usize) else {
                return;
            };
            let ok = match sent {
                Sent::Ok => {
                    raw_sent += 1;
                    true
                }
                // Larger than one unfragmented packet: the sink's socket
                // sends it in fragments.
                Sent::Refused(nix::errno::Errno::EMSGSIZE) => {
                    match (slots.get(o.sink as usize), io.payload(o)) {
                        (Some(Some(out)), Some(data)) => {
                            out.destination().is_some_and(|to| send_one(out, to, data))
                        }
                        _ => false,
                    }
                }
                Sent::Refused(_) => false,
            };
            bump(
                if ok {
                    &from.counters.sent
                } else {
                    &from.counters.errors
                },
                1,
            );
        });
        if unrouted > 0 {
            raw.stats.unrouted.fetch_add(unrouted, Ordering::Relaxed);
        }
        if raw_sent > 0 {
            raw.stats.sent.fetch_add(raw_sent, Ordering::Relaxed);
        }
        self.raw = Some(raw);
    }
}

impl raw::RawIo {
    /// The payload of received datagram `i`, read as `d`.
    fn received(&self, i: usize, d: &raw::Datagram) -> &[u8] {
        self.bufs
            .get(i)
            .and_then(|b| b.get(d.payload..d.end))
            .unwrap_or_default()
    }

    /// The payload of a queued datagram (after the headers written for it).
    fn payload(&self, o: Outgoing) -> Option<&[u8]> {
        self.bufs.get(o.buf)?.get(o.start + HEADERS..o.end)
    }
}
