//! A bounded byte writer over a caller-provided buffer (no allocation).

use thiserror::Error;

/// The buffer is full.
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
#[error("message does not fit the output buffer")]
pub struct WriterFull;

/// Appends bytes to a fixed buffer and fails instead of growing.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    /// A writer continuing after `len` bytes already in `buf`.
    pub fn at(buf: &'a mut [u8], len: usize) -> Self {
        let len = len.min(buf.len());
        Writer { buf, len }
    }

    /// Appends `bytes`.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), WriterFull> {
        let end = self.len.checked_add(bytes.len()).ok_or(WriterFull)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(WriterFull)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Appends `value` in decimal.
    pub fn put_u64(&mut self, value: u64) -> Result<(), WriterFull> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }

    /// Appends `value` as zero-padded decimal of exactly `width` digits.
    pub fn put_padded(&mut self, value: u64, width: usize) -> Result<(), WriterFull> {
        let end = self.len.checked_add(width).ok_or(WriterFull)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(WriterFull)?;
        crate::template::write_padded(dst, value);
        self.len = end;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The written bytes.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_refuses_overflow() {
        let mut b = [0u8; 8];
        let mut w = Writer::new(&mut b);
        w.put(b"ab").unwrap();
        w.put_u64(12345).unwrap();
        assert_eq!(w.written(), b"ab12345");
        assert_eq!(w.put(b"xy"), Err(WriterFull));
        assert_eq!(w.written(), b"ab12345");
        w.put_u64(0).unwrap();
        assert_eq!(w.written(), b"ab123450");
        let mut b = [0u8; 4];
        let mut w = Writer::new(&mut b);
        w.put_padded(7, 3).unwrap();
        assert_eq!(w.written(), b"007");
        assert_eq!(w.put_padded(7, 3), Err(WriterFull));
    }
}
