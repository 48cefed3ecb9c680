//! Line-preserving SDP (RFC 8866) tokenizer and editor, without I/O.
//!
//! [`Sdp::parse`] indexes an SDP body into lines (keeping each line's own
//! ending) and media sections. The editing methods change only the lines they
//! are asked to change; [`Sdp::render`] writes every other line back
//! byte-identical and in its original order. Added lines go at the end of
//! their section and use the document's line ending.
//!
//! ```
//! use voxline_sdp::Sdp;
//! let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
//! let mut sdp = Sdp::parse(body).unwrap();
//! assert_eq!(sdp.media(0).unwrap().port, 5000);
//! sdp.set_session_connection("127.0.0.1".parse().unwrap());
//! sdp.set_media_port(0, 30000);
//! assert!(sdp.render().contains("m=audio 30000 RTP/AVP 0\r\n"));
//! ```

use std::borrow::Cow;
use std::net::IpAddr;

mod model;

pub use model::{Connection, Direction, MediaInfo, Origin};

/// What is wrong with an SDP body; every variant names the problem and, where
/// there is one, the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is empty or only whitespace.
    #[error("empty SDP body")]
    Empty,
    /// The first line is not `v=0`.
    #[error("SDP does not start with a 'v=' line")]
    NoVersion,
    /// A line that is not `<letter>=<value>`.
    #[error("line {line}: not a '<type>=<value>' line")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// An `m=` line without media, port and protocol.
    #[error("line {line}: malformed 'm=' line: {reason}")]
    BadMedia {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `c=` line without a parseable address.
    #[error("line {line}: malformed 'c=' line: {reason}")]
    BadConnection {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An `o=` line with fewer than six fields or a non-numeric version.
    #[error("line {line}: malformed 'o=' line")]
    BadOrigin {
        /// 1-based line number.
        line: usize,
    },
    /// A media section without any connection address (none at session level
    /// either).
    #[error("media section {index} has no 'c=' line and there is no session-level one")]
    NoConnection {
        /// 0-based media index.
        index: usize,
    },
    /// A body with bytes that are not UTF-8 text.
    #[error("SDP is not valid UTF-8 text")]
    NotText,
}

#[derive(Debug, Clone)]
struct Line<'a> {
    text: Cow<'a, str>,
    eol: &'a str,
    removed: bool,
}

impl Line<'_> {
    fn kind(&self) -> u8 {
        self.text.as_bytes().first().copied().unwrap_or(0)
    }

    fn value(&self) -> &str {
        self.text.get(2..).unwrap_or_default()
    }

    /// For `a=name[:value]`: the attribute name.
    fn attr_name(&self) -> Option<&str> {
        if self.kind() != b'a' {
            return None;
        }
        let v = self.value();
        Some(v.split_once(':').map_or(v, |(n, _)| n))
    }
}

/// A parsed SDP body with pending edits.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    lines: Vec<Line<'a>>,
    /// Index into `lines` of each `m=` line.
    media_starts: Vec<usize>,
    /// End (exclusive) of the last section: trailing blank lines are kept
    /// outside any section.
    body_end: usize,
    /// Lines to add after a line index: (after, text).
    additions: Vec<(usize, String)>,
    eol: &'static str,
}

impl<'a> Sdp<'a> {
    /// Tokenizes `body`. Validates the structure the relay relies on:
    /// `v=` first, `<type>=<value>` lines, well-formed `m=`, `c=` and `o=`.
    pub fn parse(body: &'a str) -> Result<Sdp<'a>, SdpError> {
        if body.trim().is_empty() {
            return Err(SdpError::Empty);
        }
        let mut lines = Vec::with_capacity(32);
        let mut rest = body;
        let mut eol: &'static str = "\r\n";
        while !rest.is_empty() {
            let (text, line_eol, next) = match rest.find('\n') {
                Some(nl) => {
                    let (t, e) = if nl > 0 && rest.as_bytes().get(nl - 1) == Some(&b'\r') {
                        (&rest[..nl - 1], &rest[nl - 1..=nl])
                    } else {
                        (&rest[..nl], &rest[nl..=nl])
                    };
                    (t, e, &rest[nl + 1..])
                }
                None => (rest, "", ""),
            };
            if lines.is_empty() && line_eol == "\n" {
                eol = "\n";
            }
            lines.push(Line {
                text: Cow::Borrowed(text),
                eol: line_eol,
                removed: false,
            });
            rest = next;
        }
        let mut body_end = lines.len();
        while body_end > 0
            && lines
                .get(body_end - 1)
                .is_some_and(|l| l.text.trim().is_empty())
        {
            body_end -= 1;
        }
        if lines.first().map(|l| l.text.as_ref()) != Some("v=0") {
            return Err(SdpError::NoVersion);
        }
        let mut media_starts = Vec::new();
        for (i, line) in lines.iter().enumerate().take(body_end) {
            let n = i + 1;
            let b = line.text.as_bytes();
            if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
                return Err(SdpError::MalformedLine { line: n });
            }
            match b[0] {
                b'm' => {
                    model::parse_media_line(line.value(), n)?;
                    media_starts.push(i);
                }
                b'c' => {
                    model::parse_connection(line.value(), n)?;
                }
                b'o' => {
                    model::parse_origin(line.value(), n)?;
                }
                _ => {}
            }
        }
        let sdp = Sdp {
            lines,
            media_starts,
            body_end,
            additions: Vec::new(),
            eol,
        };
        for i in 0..sdp.media_starts.len() {
            if sdp.media_line_of(i, b'c').is_none() && sdp.session_line(b'c').is_none() {
                return Err(SdpError::NoConnection { index: i });
            }
        }
        Ok(sdp)
    }

    /// Line range `[start, end)` of media section `i`.
    fn section(&self, i: usize) -> Option<(usize, usize)> {
        let start = *self.media_starts.get(i)?;
        let end = self
            .media_starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.body_end);
        Some((start, end))
    }

    fn session_end(&self) -> usize {
        self.media_starts.first().copied().unwrap_or(self.body_end)
    }

    fn session_line(&self, kind: u8) -> Option<usize> {
        (0..self.session_end()).find(|&j| {
            self.lines
                .get(j)
                .is_some_and(|l| !l.removed && l.kind() == kind)
        })
    }

    fn media_line_of(&self, i: usize, kind: u8) -> Option<usize> {
        let (s, e) = self.section(i)?;
        (s + 1..e).find(|&j| {
            self.lines
                .get(j)
                .is_some_and(|l| !l.removed && l.kind() == kind)
        })
    }

    fn attrs_in(&self, start: usize, end: usize, name: &str) -> impl Iterator<Item = usize> + '_ {
        let name = name.to_owned();
        (start..end).filter(move |&j| {
            self.lines
                .get(j)
                .is_some_and(|l| !l.removed && l.attr_name() == Some(name.as_str()))
        })
    }

    fn attr_value(&self, start: usize, end: usize, name: &str) -> Option<&str> {
        let j = self.attrs_in(start, end, name).next()?;
        let v = self.lines.get(j)?.value();
        Some(v.split_once(':').map_or("", |(_, v)| v))
    }

    /// Number of media sections.
    pub fn media_count(&self) -> usize {
        self.media_starts.len()
    }

    /// The session-level connection, if any.
    pub fn session_connection(&self) -> Option<Connection> {
        let j = self.session_line(b'c')?;
        model::parse_connection(self.lines.get(j)?.value(), j + 1).ok()
    }

    /// The `o=` line's fields.
    pub fn origin(&self) -> Option<Origin> {
        let j = self.session_line(b'o')?;
        model::parse_origin(self.lines.get(j)?.value(), j + 1).ok()
    }

    /// True if the session level carries an attribute `name`.
    pub fn has_session_attr(&self, name: &str) -> bool {
        self.attrs_in(0, self.session_end(), name).next().is_some()
    }

    /// True if media section `i` or the session level carries `name`.
    pub fn has_attr(&self, i: usize, name: &str) -> bool {
        self.section(i)
            .is_some_and(|(s, e)| self.attrs_in(s + 1, e, name).next().is_some())
            || self.has_session_attr(name)
    }

    /// What the relay needs to know about media section `i`.
    pub fn media(&self, i: usize) -> Option<MediaInfo> {
        let (s, e) = self.section(i)?;
        let m = model::parse_media_line(self.lines.get(s)?.value(), s + 1).ok()?;
        let connection = match self.media_line_of(i, b'c') {
            Some(j) => model::parse_connection(self.lines.get(j)?.value(), j + 1).ok(),
            None => self.session_connection(),
        }?;
        let rtcp = self
            .attr_value(s + 1, e, "rtcp")
            .and_then(model::parse_rtcp_attr);
        let direction = [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| self.attrs_in(s + 1, e, d.as_str()).next().is_some())
        .or_else(|| {
            [
                Direction::SendRecv,
                Direction::SendOnly,
                Direction::RecvOnly,
                Direction::Inactive,
            ]
            .into_iter()
            .find(|d| self.has_session_attr(d.as_str()))
        })
        .unwrap_or(Direction::SendRecv);
        Some(MediaInfo {
            kind: m.kind.to_owned(),
            port: m.port,
            port_count: m.port_count,
            protocol: m.protocol.to_owned(),
            formats: m.formats.to_owned(),
            connection,
            rtcp_port: rtcp.map(|r| r.0),
            rtcp_address: rtcp.and_then(|r| r.1),
            rtcp_mux: self.attrs_in(s + 1, e, "rtcp-mux").next().is_some(),
            direction,
            ice: self.has_attr(i, "ice-ufrag")
                || self.attrs_in(s + 1, e, "candidate").next().is_some(),
        })
    }

    fn replace_line(&mut self, j: usize, text: String) {
        if let Some(l) = self.lines.get_mut(j)
            && l.text != text
        {
            l.text = Cow::Owned(text);
        }
    }

    /// Rewrites the session-level `c=` address (if there is one).
    pub fn set_session_connection(&mut self, addr: IpAddr) {
        if let Some(j) = self.session_line(b'c') {
            self.replace_line(j, format!("c={}", model::connection_value(addr)));
        }
    }

    /// Rewrites media section `i`'s own `c=` line, or adds one if the section
    /// has none and `add` is true.
    pub fn set_media_connection(&mut self, i: usize, addr: IpAddr, add: bool) {
        match self.media_line_of(i, b'c') {
            Some(j) => self.replace_line(j, format!("c={}", model::connection_value(addr))),
            None if add => {
                if let Some((s, _)) = self.section(i) {
                    // RFC 8866 order: c= follows i= right after m=.
                    let after = match self.lines.get(s + 1) {
                        Some(l) if !l.removed && l.kind() == b'i' => s + 1,
                        _ => s,
                    };
                    self.additions
                        .push((after, format!("c={}", model::connection_value(addr))));
                }
            }
            None => {}
        }
    }

    /// True if media section `i` has its own `c=` line.
    pub fn media_has_connection(&self, i: usize) -> bool {
        self.media_line_of(i, b'c').is_some()
    }

    /// Sets the port of media section `i`'s `m=` line.
    pub fn set_media_port(&mut self, i: usize, port: u16) {
        self.edit_media_line(i, |m| m.port = port);
    }

    /// Sets the transport protocol of media section `i`'s `m=` line.
    pub fn set_media_protocol(&mut self, i: usize, protocol: &str) {
        let protocol = protocol.to_owned();
        self.edit_media_line(i, move |m| m.protocol = protocol);
    }

    fn edit_media_line(&mut self, i: usize, f: impl FnOnce(&mut model::OwnedMediaLine)) {
        let Some((s, _)) = self.section(i) else {
            return;
        };
        let Some(line) = self.lines.get(s) else {
            return;
        };
        let Ok(m) = model::parse_media_line(line.value(), s + 1) else {
            return;
        };
        let mut owned = model::OwnedMediaLine::from(&m);
        f(&mut owned);
        let text = owned.render();
        self.replace_line(s, text);
    }

    /// Sets or adds `a=rtcp:<port> [IN IP4 <addr>]` in media section `i`
    /// (the address part is written only if the original had one).
    pub fn set_rtcp(&mut self, i: usize, port: u16, addr: IpAddr) {
        let Some((s, e)) = self.section(i) else {
            return;
        };
        let existing = self.attrs_in(s + 1, e, "rtcp").next();
        match existing {
            Some(j) => {
                let had_addr = self
                    .lines
                    .get(j)
                    .is_some_and(|l| l.value().split_whitespace().count() > 1);
                let text = if had_addr {
                    format!("a=rtcp:{port} {}", model::connection_value(addr))
                } else {
                    format!("a=rtcp:{port}")
                };
                self.replace_line(j, text);
            }
            None => self.add_media_attr(i, &format!("rtcp:{port}")),
        }
    }

    /// Removes every `a=<name>` / `a=<name>:...` line of media section `i`.
    pub fn remove_media_attr(&mut self, i: usize, name: &str) {
        if let Some((s, e)) = self.section(i) {
            let hits: Vec<usize> = self.attrs_in(s + 1, e, name).collect();
            for j in hits {
                if let Some(l) = self.lines.get_mut(j) {
                    l.removed = true;
                }
            }
        }
    }

    /// Removes every session-level `a=<name>` line.
    pub fn remove_session_attr(&mut self, name: &str) {
        let hits: Vec<usize> = self.attrs_in(0, self.session_end(), name).collect();
        for j in hits {
            if let Some(l) = self.lines.get_mut(j) {
                l.removed = true;
            }
        }
    }

    /// Appends `a=<attr>` at the end of media section `i`.
    pub fn add_media_attr(&mut self, i: usize, attr: &str) {
        if let Some((_, e)) = self.section(i) {
            self.additions
                .push((e.saturating_sub(1), format!("a={attr}")));
        }
    }

    /// Rewrites the `o=` line: the address (if given) and the version
    /// (incremented by one if `bump`).
    pub fn set_origin(&mut self, addr: Option<IpAddr>, bump: bool) {
        let Some(j) = self.session_line(b'o') else {
            return;
        };
        let Some(o) = self
            .lines
            .get(j)
            .and_then(|l| model::parse_origin(l.value(), j + 1).ok())
        else {
            return;
        };
        let version = if bump {
            o.version.wrapping_add(1)
        } else {
            o.version
        };
        let (family, address) = match addr {
            Some(a) => (model::family_token(a).to_owned(), a.to_string()),
            None => (o.address_type.clone(), o.address.clone()),
        };
        self.replace_line(
            j,
            format!(
                "o={} {} {} {} {} {}",
                o.username, o.session_id, version, o.network_type, family, address
            ),
        );
    }

    /// Rewrites the `s=` line.
    pub fn set_session_name(&mut self, name: &str) {
        if let Some(j) = self.session_line(b's') {
            self.replace_line(j, format!("s={name}"));
        }
    }

    /// Writes the document with all edits applied.
    pub fn render(&self) -> String {
        let mut out =
            String::with_capacity(self.lines.iter().map(|l| l.text.len() + 2).sum::<usize>() + 128);
        let mut additions = self.additions.clone();
        additions.sort_by_key(|(after, _)| *after);
        let mut next_add = additions.iter().peekable();
        for (j, line) in self.lines.iter().enumerate() {
            if !line.removed {
                out.push_str(&line.text);
                // A last line without an ending gets one if text follows it.
                let eol = if line.eol.is_empty() && next_add.peek().is_some() {
                    self.eol
                } else {
                    line.eol
                };
                out.push_str(eol);
            }
            while let Some((_, text)) = next_add.next_if(|(after, _)| *after == j) {
                out.push_str(text);
                out.push_str(self.eol);
            }
        }
        for (_, text) in next_add {
            out.push_str(text);
            out.push_str(self.eol);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
