//! A trivial stateless SIP responder: every request except ACK gets a canned `200 OK`
//! (Via, From, To, Call-ID and CSeq copied), received and sent in batches. It measures the
//! generator's own ceiling, and serves as a stand-in server in tests.
//!
//! With [`Responder::challenging`] it also stands for the cheapest registrar with digest
//! authentication there can be: a REGISTER without an `Authorization` header gets a canned
//! `401` with one fixed MD5 challenge, one with credentials a `200 OK`, and nothing is
//! verified. Its flows/s are what the kernel and a minimal framing leave of one core, the
//! ceiling a real registrar's REGISTER → 401 → REGISTER → 200 flow is measured against.

use crate::message;
use crate::outbox::{Leg, Outbox};
use crate::response::{ResponseSpec, write_response, write_response_with_tail};
use crate::socket::{BATCH, BatchIo, send_to, set_buffers};
use crate::writer::Writer;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MultiHeaders, SockaddrStorage};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the responder did.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ResponderStats {
    /// Datagrams received.
    pub received: u64,
    /// Responses sent (200 OK and 401).
    pub answered: u64,
    /// 401 challenges among them.
    pub challenged: u64,
    /// Datagrams that were not readable SIP.
    pub parse_errors: u64,
    /// Responses and ACKs received (not answered).
    pub ignored: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
}

/// A bound responder socket.
#[derive(Debug)]
pub struct Responder {
    socket: UdpSocket,
    /// The 401's header lines after CSeq, blank line included, when REGISTERs are challenged.
    challenge: Option<Vec<u8>>,
}

impl Responder {
    /// Binds the responder (use port 0 for a free port).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Responder> {
        let socket = UdpSocket::bind(addr)?;
        set_buffers(&socket);
        Ok(Responder {
            socket,
            challenge: None,
        })
    }

    /// Challenges every REGISTER without an `Authorization` header with a canned `401`
    /// (MD5, `qop="auth"`, one fixed nonce, `realm`); credentials are not checked.
    pub fn challenging(mut self, realm: &str) -> Responder {
        self.challenge = Some(
            format!(
                "WWW-Authenticate: Digest realm=\"{realm}\", \
                 nonce=\"responder0000000000000000000000\", qop=\"auth\", algorithm=MD5\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        );
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers requests until `duration` has passed, `count` requests were answered, or
    /// `stop` is set.
    pub fn run(
        &self,
        duration: Duration,
        count: Option<u64>,
        stop: &AtomicBool,
    ) -> nix::Result<ResponderStats> {
        let start = Instant::now();
        let mut st = ResponderStats::default();
        let mut rx = BatchIo::new();
        let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
        let mut out = Outbox::new();
        let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
        while start.elapsed() < duration
            && !stop.load(Ordering::Relaxed)
            && count.is_none_or(|c| st.answered < c)
        {
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(50u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            for _ in 0..16 {
                let n = rx.recv(&self.socket)?;
                if n == 0 {
                    break;
                }
                out.clear();
                addrs.clear();
                for (data, from) in rx.received() {
                    st.received += 1;
                    match message::parse(data) {
                        Ok(m) if m.status().is_none() && m.method() != Some(&b"ACK"[..]) => {
                            let challenge = self.challenge.as_deref().filter(|_| {
                                m.method() == Some(&b"REGISTER"[..])
                                    && memchr::memmem::find(data, b"\nAuthorization:").is_none()
                            });
                            let spec = ResponseSpec {
                                code: if challenge.is_some() { 401 } else { 200 },
                                reason: if challenge.is_some() {
                                    b"Unauthorized"
                                } else {
                                    b"OK"
                                },
                                to_tag: b"responder",
                                copy_record_route: false,
                                contact: None,
                            };
                            let pushed = out.push(Leg::Uac, |b| {
                                let mut w = Writer::new(b);
                                match challenge {
                                    Some(tail) => write_response_with_tail(&mut w, &m, &spec, tail),
                                    None => write_response(&mut w, &m, &spec),
                                }
                                .map(|()| w.len())
                            });
                            if pushed.is_ok() {
                                addrs.push(from);
                                st.answered += 1;
                                st.challenged += u64::from(challenge.is_some());
                            }
                        }
                        Ok(_) => st.ignored += 1,
                        Err(_) => st.parse_errors += 1,
                    }
                }
                st.send_errors += send_to(&self.socket, &mut headers, &out, &addrs);
                if n < BATCH {
                    break;
                }
            }
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_requests_and_ignores_ack() {
        let r = Responder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = r.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.connect(addr).unwrap();
        client.send(b"ACK sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nCall-ID: c0\r\nCSeq: 1 ACK\r\n\r\n").unwrap();
        client.send(b"junk").unwrap();
        client.send(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:a>\r\nCall-ID: c1\r\nCSeq: 5 OPTIONS\r\n\r\n").unwrap();
        let stop = AtomicBool::new(false);
        let st = r.run(Duration::from_secs(10), Some(1), &stop).unwrap();
        let mut buf = [0u8; 2048];
        let n = client.recv(&mut buf).unwrap();
        let m = message::parse(&buf[..n]).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.call_id, b"c1");
        assert_eq!(m.cseq, 5);
        assert_eq!(m.branch, b"z9hG4bKb");
        assert_eq!(st.answered, 1);
        assert_eq!(st.ignored, 1);
        assert_eq!(st.parse_errors, 1);
    }
}
