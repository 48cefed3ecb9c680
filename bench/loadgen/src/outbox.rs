//! Outgoing datagrams queued by the sans-IO flow logic, drained by the socket loop.

/// Largest datagram the generator builds.
pub const MAX_DATAGRAM: usize = 4096;

/// Which of a flow engine's sockets a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The calling side (UAC) socket.
    Uac,
    /// The called side (UAS) socket.
    Uas,
}

/// A queue of datagrams in reusable fixed-size buffers: buffers are allocated only when the
/// queue grows beyond its previous high-water mark, never per message in steady state.
#[derive(Debug, Default)]
pub struct Outbox {
    bufs: Vec<Box<[u8; MAX_DATAGRAM]>>,
    lens: Vec<usize>,
    legs: Vec<Leg>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Queues a datagram written by `fill` into a buffer of [`MAX_DATAGRAM`] bytes; `fill`
    /// returns the length, or an error which is passed through (nothing is queued then).
    pub fn push<E>(
        &mut self,
        leg: Leg,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let n = self.lens.len();
        if n == self.bufs.len() {
            self.bufs.push(Box::new([0u8; MAX_DATAGRAM]));
        }
        let Some(buf) = self.bufs.get_mut(n) else {
            return Ok(());
        };
        let len = fill(&mut buf[..])?;
        self.lens.push(len.min(MAX_DATAGRAM));
        self.legs.push(leg);
        Ok(())
    }

    /// Queues a copy of `bytes` (truncated to [`MAX_DATAGRAM`]).
    pub fn push_bytes(&mut self, leg: Leg, bytes: &[u8]) {
        let n = bytes.len().min(MAX_DATAGRAM);
        let _ = self.push::<()>(leg, |b| {
            b[..n].copy_from_slice(&bytes[..n]);
            Ok(n)
        });
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The queued datagrams with their legs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Leg, &[u8])> {
        self.bufs
            .iter()
            .zip(self.lens.iter().zip(self.legs.iter()))
            .map(|(b, (&len, &leg))| (leg, &b[..len]))
    }

    /// Forgets the queued datagrams (buffers are kept for reuse).
    pub fn clear(&mut self) {
        self.lens.clear();
        self.legs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers() {
        let mut o = Outbox::new();
        o.push_bytes(Leg::Uac, b"one");
        o.push_bytes(Leg::Uas, b"two");
        let got: Vec<(Leg, Vec<u8>)> = o.iter().map(|(l, b)| (l, b.to_vec())).collect();
        assert_eq!(
            got,
            vec![(Leg::Uac, b"one".to_vec()), (Leg::Uas, b"two".to_vec())]
        );
        o.clear();
        assert!(o.is_empty());
        o.push_bytes(Leg::Uac, b"three");
        assert_eq!(o.bufs.len(), 2);
        assert_eq!(o.len(), 1);
        assert!(o.push::<&str>(Leg::Uac, |_| Err("no")).is_err());
        assert_eq!(o.len(), 1);
    }
}
