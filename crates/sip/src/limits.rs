//! Resource limits applied while framing untrusted input.

/// Bounds on what the parser accepts, so hostile input costs bounded work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line, headers and body) in bytes.
    pub max_message_size: usize,
    /// Most header lines (continuation lines count with their header).
    pub max_headers: usize,
}

impl Limits {
    /// 64 KiB messages, 256 header lines.
    pub const DEFAULT: Limits = Limits {
        max_message_size: 65_535,
        max_headers: 256,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
