//! Forwarding by splicing: edits are recorded against the original message
//! and written out as the original bytes with only the touched ranges
//! replaced, so untouched headers are copied byte for byte, never
//! re-printed. Output goes into a caller-owned `BytesMut`, and the editor
//! keeps its bookkeeping inline, so a forwarding loop need not allocate.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use crate::frame::{HeaderEntry, Span, StartLine};
use crate::header_name::HeaderName;
use crate::lex::{next_top_comma, trim_lws};
use crate::message::Message;
use crate::name_addr::NameAddr;
use crate::via::Via;

/// Why a set of edits could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Two edits touch the same bytes (e.g. removing a header and also
    /// rewriting it).
    #[error("conflicting edits")]
    Conflict,
    /// Asked to pop more values than the header has.
    #[error("no {0} value left to remove")]
    NothingToRemove(HeaderName),
    /// Max-Forwards is already 0: the proxy must answer 483 instead.
    #[error("Max-Forwards is 0")]
    MaxForwardsExhausted,
    /// A request-only edit on a response.
    #[error("edit applies to requests only")]
    NotARequest,
    /// The top Via cannot be parsed, so received/rport cannot be set.
    #[error("top Via is malformed")]
    MalformedVia,
    /// A Route value is malformed, so strict routing cannot use it.
    #[error("Route is malformed")]
    MalformedRoute,
    /// The edited message no longer frames (only reachable through edits
    /// that insert malformed text).
    #[error("the edited message does not frame")]
    Unframeable,
}

/// One splice of a `received`/`rport` stamp: replace `start..end` with
/// the pieces (an empty text piece pads a single one).
type StampSplice<'a> = (u32, u32, [Piece<'a>; 2]);

/// One piece of output text.
#[derive(Clone, Copy, Debug)]
enum Piece<'a> {
    Text(&'a [u8]),
    Num(u64),
}

/// Replace `start..end` of the original with the pieces.
#[derive(Clone, Debug)]
struct Splice<'a> {
    start: u32,
    end: u32,
    seq: u16,
    pieces: SmallVec<[Piece<'a>; 6]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaxForwardsEdit {
    Keep,
    Decrement,
}

/// A header named by id or, for extensions, by text.
#[derive(Clone, Copy, Debug)]
enum Name<'a> {
    Known(HeaderName),
    Text(&'a str),
}

/// Splice edits over one message. Build it with [`Message::edit`], chain
/// operations, then [`Editor::write_to`]. Operations refer to the original
/// message: "the top Via" is always the received top Via.
#[derive(Clone, Debug)]
pub struct Editor<'a> {
    msg: &'a Message,
    push_vias: SmallVec<[&'a str; 2]>,
    pop_vias: usize,
    pop_routes: usize,
    last_route_to_ruri: bool,
    record_routes: SmallVec<[&'a str; 2]>,
    paths: SmallVec<[&'a str; 2]>,
    request_uri: Option<&'a str>,
    max_forwards: MaxForwardsEdit,
    via_received: Option<(Option<&'a str>, Option<u16>)>,
    removed: SmallVec<[Name<'a>; 4]>,
    added: SmallVec<[(&'a str, &'a str); 4]>,
    body: Option<(Option<&'a str>, &'a [u8])>,
    ensure_content_length: bool,
}

impl<'a> Editor<'a> {
    pub(crate) fn new(msg: &'a Message) -> Editor<'a> {
        Editor {
            msg,
            push_vias: SmallVec::new(),
            pop_vias: 0,
            pop_routes: 0,
            last_route_to_ruri: false,
            record_routes: SmallVec::new(),
            paths: SmallVec::new(),
            request_uri: None,
            max_forwards: MaxForwardsEdit::Keep,
            // A received request's stamp goes into every copy of it.
            via_received: msg.received_stamp().map(|st| (st.received(), st.rport())),
            removed: SmallVec::new(),
            added: SmallVec::new(),
            body: None,
            ensure_content_length: false,
        }
    }

    /// Adds a Via value on top (`value` without the `Via:` name, e.g.
    /// `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...`). Pushing twice puts
    /// the second one on top.
    pub fn push_via(&mut self, value: &'a str) -> &mut Self {
        self.push_vias.push(value);
        self
    }

    /// Removes the top Via value (responses travelling back). Repeated calls
    /// remove the following values.
    pub fn pop_via(&mut self) -> &mut Self {
        self.pop_vias += 1;
        self
    }

    /// Removes the top Route value (loose routing, RFC 3261 §16.4).
    pub fn pop_route(&mut self) -> &mut Self {
        self.pop_routes += 1;
        self
    }

    /// Strict-router handling (RFC 3261 §16.4): replaces the Request-URI
    /// with the URI of the last Route value and removes that value.
    pub fn last_route_to_request_uri(&mut self) -> &mut Self {
        self.last_route_to_ruri = true;
        self
    }

    /// Adds a Record-Route value above the existing ones, e.g.
    /// `<sip:192.0.2.1;lr>`.
    pub fn add_record_route(&mut self, value: &'a str) -> &mut Self {
        self.record_routes.push(value);
        self
    }

    /// Adds a Path value (RFC 3327) above the existing ones.
    pub fn add_path(&mut self, value: &'a str) -> &mut Self {
        self.paths.push(value);
        self
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &'a str) -> &mut Self {
        self.request_uri = Some(uri);
        self
    }

    /// Decrements Max-Forwards, or inserts `Max-Forwards: 70` when absent
    /// or unreadable (RFC 3261 §16.6 step 3).
    pub fn decrement_max_forwards(&mut self) -> &mut Self {
        self.max_forwards = MaxForwardsEdit::Decrement;
        self
    }

    /// Sets `received` (added or replaced) on the top Via and fills an
    /// `rport` that is present (RFC 3261 §18.2.1, RFC 3581 §4). A `None`
    /// leaves that parameter alone; `rport` is never added when absent.
    pub fn set_via_received(&mut self, received: Option<&'a str>, rport: Option<u16>) -> &mut Self {
        self.via_received = Some((received, rport));
        self
    }

    /// Removes every header field called `name`.
    pub fn remove_header(&mut self, name: HeaderName) -> &mut Self {
        self.removed.push(Name::Known(name));
        self
    }

    /// Removes every header field whose name is `name` as text (use this
    /// for extension headers).
    pub fn remove_header_by_name(&mut self, name: &'a str) -> &mut Self {
        match HeaderName::from_str(name) {
            HeaderName::Other => self.removed.push(Name::Text(name)),
            known => self.removed.push(Name::Known(known)),
        }
        self
    }

    /// Appends a header field at the end of the header section.
    pub fn add_header(&mut self, name: &'a str, value: &'a str) -> &mut Self {
        self.added.push((name, value));
        self
    }

    /// Replaces every header field called `name` with one new field.
    pub fn replace_header(&mut self, name: &'a str, value: &'a str) -> &mut Self {
        self.remove_header_by_name(name);
        self.add_header(name, value)
    }

    /// Replaces the body and Content-Length, and Content-Type when given.
    pub fn set_body(&mut self, content_type: Option<&'a str>, body: &'a [u8]) -> &mut Self {
        self.body = Some((content_type, body));
        self
    }

    /// Adds Content-Length when the message has none (needed when a
    /// datagram without it is forwarded over a stream).
    pub fn ensure_content_length(&mut self) -> &mut Self {
        self.ensure_content_length = true;
        self
    }

    /// Writes the edited message into `out` (appending).
    pub fn write_to(&self, out: &mut BytesMut) -> Result<(), EditError> {
        let mut splices: SmallVec<[Splice<'a>; 12]> = SmallVec::new();
        self.plan(&mut splices)?;
        splices.sort_by_key(|s| (s.start, s.end, s.seq));
        self.write_planned(&splices, out)
    }

    /// Writes the original with the planned (sorted) splices applied.
    fn write_planned(&self, splices: &[Splice<'a>], out: &mut BytesMut) -> Result<(), EditError> {
        let frame = self.msg.frame();
        let buf: &[u8] = self.msg.buffer();
        let mut pos = frame.msg_start;
        let end = frame.body_end;
        let mut size = (end - pos) as usize;
        for s in splices {
            if s.start < pos || s.end > end {
                return Err(EditError::Conflict);
            }
            size += s
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.len(),
                    Piece::Num(_) => 20,
                })
                .sum::<usize>();
            pos = s.end;
        }
        out.reserve(size);
        pos = frame.msg_start;
        for s in splices {
            out.put_slice(buf.get(pos as usize..s.start as usize).unwrap_or_default());
            put_pieces(out, &s.pieces);
            pos = s.end;
        }
        out.put_slice(buf.get(pos as usize..end as usize).unwrap_or_default());
        Ok(())
    }

    /// Writes the value of `entry`, the message's first Via header line,
    /// with the message's received stamp in its top Via: what a response
    /// copies. Without a stamp, or with a top Via the stamp cannot be
    /// written into, the value goes out as received.
    pub(crate) fn write_stamped_via_line(&self, entry: &HeaderEntry, out: &mut BytesMut) {
        let buf: &[u8] = self.msg.buffer();
        let (start, end) = (entry.value_start, entry.value_end);
        let splices = match self.via_received {
            Some((received, rport)) => self.stamp_splices(received, rport).unwrap_or_default(),
            None => SmallVec::new(),
        };
        let mut sorted: SmallVec<[&StampSplice<'a>; 2]> = splices.iter().collect();
        sorted.sort_by_key(|s| (s.0, s.1));
        let mut pos = start;
        if sorted.iter().all(|s| start <= s.0 && s.1 <= end) {
            for (s, e, pieces) in sorted {
                out.put_slice(buf.get(pos as usize..*s as usize).unwrap_or_default());
                put_pieces(out, pieces);
                pos = *e;
            }
        }
        out.put_slice(buf.get(pos as usize..end as usize).unwrap_or_default());
    }

    /// Convenience: the edited message as new `Bytes`.
    pub fn to_bytes(&self) -> Result<Bytes, EditError> {
        let mut out = BytesMut::with_capacity(self.msg.as_bytes().len() + 256);
        self.write_to(&mut out)?;
        Ok(out.freeze())
    }

    /// The edited message, framed. When every edit changes text inside
    /// header values only (setting Via `received`/`rport`, the common case
    /// on receive), the original index is shifted instead of framing the
    /// new bytes again; other edits are framed anew.
    pub fn to_message(&self) -> Result<Message, EditError> {
        let mut splices: SmallVec<[Splice<'a>; 12]> = SmallVec::new();
        self.plan(&mut splices)?;
        splices.sort_by_key(|s| (s.start, s.end, s.seq));
        let frame = self.msg.frame();
        let inside_values = splices.iter().all(|s| {
            let text_ok = s.pieces.iter().all(|p| match p {
                Piece::Text(t) => !t.iter().any(|&c| c == b'\r' || c == b'\n'),
                Piece::Num(_) => true,
            });
            text_ok
                && frame
                    .headers
                    .iter()
                    .any(|h| h.value_start < s.start && s.start <= s.end && s.end <= h.value_end)
        });
        // Sized once: grown piece by piece it was reallocated and copied
        // several times per message.
        let frame_len = (frame.body_end - frame.msg_start) as usize;
        let mut out =
            BytesMut::with_capacity(frame_len + splices.iter().map(spliced_len).sum::<usize>());
        self.write_planned(&splices, &mut out)?;
        let bytes = out.freeze();
        if !inside_values || bytes.len() > u32::MAX as usize {
            return Message::parse(bytes).map_err(|_| EditError::Unframeable);
        }
        // Each splice moves everything from its end on by its change in
        // length; the new buffer starts at the old message start.
        let moves: SmallVec<[(u32, i64); 12]> = splices
            .iter()
            .map(|s| (s.end, spliced_len(s) as i64 - i64::from(s.end - s.start)))
            .collect();
        let shift = |o: u32| -> u32 {
            let mut n = i64::from(o) - i64::from(frame.msg_start);
            for &(end, delta) in &moves {
                if end <= o {
                    n += delta;
                }
            }
            u32::try_from(n).unwrap_or(0)
        };
        let mut shifted = frame.clone();
        shifted.msg_start = 0;
        shifted.start_line = match frame.start_line {
            StartLine::Request {
                method,
                uri,
                version,
            } => StartLine::Request {
                method: shift_span(method, &shift),
                uri: shift_span(uri, &shift),
                version: shift_span(version, &shift),
            },
            StartLine::Response {
                version,
                status,
                reason,
            } => StartLine::Response {
                version: shift_span(version, &shift),
                status,
                reason: shift_span(reason, &shift),
            },
        };
        shifted.start_line_end = shift(frame.start_line_end);
        for h in shifted.headers.iter_mut() {
            h.line_start = shift(h.line_start);
            h.name_end = shift(h.name_end);
            h.value_start = shift(h.value_start);
            h.value_end = shift(h.value_end);
            h.line_end = shift(h.line_end);
        }
        shifted.head_end = shift(frame.head_end);
        shifted.body_start = shift(frame.body_start);
        shifted.body_end = shift(frame.body_end);
        Ok(Message::from_frame(bytes, shifted))
    }

    /// The splices that write `received`/`rport` into the top Via, in the
    /// order made (`rport` first: when it ends the value, both insert at
    /// one offset).
    fn stamp_splices(
        &self,
        received: Option<&'a str>,
        rport: Option<u16>,
    ) -> Result<SmallVec<[StampSplice<'a>; 2]>, EditError> {
        let msg = self.msg;
        let frame = msg.frame();
        let mut out = SmallVec::new();
        let first = frame
            .headers
            .iter()
            .find(|h| h.name == HeaderName::Via)
            .ok_or(EditError::MalformedVia)?;
        let line = msg.entry_value(first);
        let elem_end = next_top_comma(line.as_bytes(), 0);
        let elem = trim_lws(line.get(..elem_end).unwrap_or_default());
        let base = first.value_start + offset_in(line, elem);
        // The message's own top Via (parsed once, cached): the same
        // text as `elem`, so offsets into one are offsets into the other.
        let via = msg.top_via().map_err(|_| EditError::MalformedVia)?;
        let elem_end_abs = base + elem.len() as u32;
        let (rport_param, received_param) = via_stamp_params(via);
        if let (Some(port), Some(_)) = (rport, via.rport) {
            let (name, value) = rport_param.ok_or(EditError::MalformedVia)?;
            match value {
                Some(v) => {
                    let s = base + offset_in(elem, v);
                    out.push((
                        s,
                        s + v.len() as u32,
                        [Piece::Num(u64::from(port)), Piece::Text(b"")],
                    ));
                }
                None => {
                    let name_end = base + offset_in(elem, name) + name.len() as u32;
                    out.push((
                        name_end,
                        name_end,
                        [Piece::Text(b"="), Piece::Num(u64::from(port))],
                    ));
                }
            }
        }
        if let Some(r) = received {
            match received_param.and_then(|(_, v)| v) {
                Some(v) => {
                    let s = base + offset_in(elem, v);
                    out.push((
                        s,
                        s + v.len() as u32,
                        [Piece::Text(r.as_bytes()), Piece::Text(b"")],
                    ));
                }
                None => {
                    out.push((
                        elem_end_abs,
                        elem_end_abs,
                        [Piece::Text(b";received="), Piece::Text(r.as_bytes())],
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The splices of every edit, unsorted.
    fn plan(&self, out: &mut SmallVec<[Splice<'a>; 12]>) -> Result<(), EditError> {
        let msg = self.msg;
        let frame = msg.frame();
        let headers = &frame.headers;
        let mut seq = 0u16;
        let mut push =
            |out: &mut SmallVec<[Splice<'a>; 12]>, start: u32, end: u32, pieces: &[Piece<'a>]| {
                out.push(Splice {
                    start,
                    end,
                    seq,
                    pieces: pieces.iter().copied().collect(),
                });
                seq += 1;
            };
        let crlf = Piece::Text(b"\r\n");

        // Request-URI.
        let ruri_span = match frame.start_line {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        };
        let mut new_ruri = self.request_uri;
        if self.last_route_to_ruri {
            let elems = elements(msg, HeaderName::Route);
            let last = elems
                .last()
                .ok_or(EditError::NothingToRemove(HeaderName::Route))?;
            let text = msg.str_at(last.start, last.end);
            let addr = NameAddr::parse(text).map_err(|_| EditError::MalformedRoute)?;
            new_ruri = Some(addr.uri.as_str());
            let (s, e) = remove_span_last(msg, &elems);
            push(out, s, e, &[]);
        }
        if let Some(uri) = new_ruri {
            let span = ruri_span.ok_or(EditError::NotARequest)?;
            push(out, span.start, span.end, &[Piece::Text(uri.as_bytes())]);
        }

        // Vias: pushes go before the first Via line (or the first header).
        if !self.push_vias.is_empty() {
            let at = headers
                .iter()
                .find(|h| h.name == HeaderName::Via)
                .or(headers.first())
                .map_or(frame.head_end, |h| h.line_start);
            let mut pieces: SmallVec<[Piece<'a>; 6]> = SmallVec::new();
            for v in self.push_vias.iter().rev() {
                pieces.extend([Piece::Text(b"Via: "), Piece::Text(v.as_bytes()), crlf]);
            }
            push(out, at, at, &pieces);
        }
        if self.pop_vias > 0 {
            pop_front(msg, HeaderName::Via, self.pop_vias, &mut |s, e| {
                push(out, s, e, &[])
            })?;
        }
        if self.pop_routes > 0 {
            pop_front(msg, HeaderName::Route, self.pop_routes, &mut |s, e| {
                push(out, s, e, &[])
            })?;
        }
        if let Some((received, rport)) = self.via_received {
            for (start, end, pieces) in self.stamp_splices(received, rport)? {
                push(out, start, end, &pieces);
            }
        }

        // Record-Route and Path: above the first existing value, or at the
        // end of the header section.
        for (name, values, label) in [
            (
                HeaderName::RecordRoute,
                &self.record_routes,
                &b"Record-Route: "[..],
            ),
            (HeaderName::Path, &self.paths, &b"Path: "[..]),
        ] {
            if values.is_empty() {
                continue;
            }
            let Some(at) = headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.line_start)
            else {
                continue; // no existing value: inserted at the end of the head below
            };
            let mut pieces: SmallVec<[Piece<'a>; 6]> = SmallVec::new();
            for v in values.iter().rev() {
                pieces.extend([Piece::Text(label), Piece::Text(v.as_bytes()), crlf]);
            }
            push(out, at, at, &pieces);
        }

        // Removed headers.
        let is_removed = |h: &HeaderEntry| {
            self.removed.iter().any(|n| match *n {
                Name::Known(k) => h.name == k,
                Name::Text(t) => {
                    h.name == HeaderName::Other && msg.entry_name(h).eq_ignore_ascii_case(t)
                }
            })
        };
        for h in headers.iter().filter(|h| is_removed(h)) {
            push(out, h.line_start, h.line_end, &[]);
        }

        // Max-Forwards.
        let mut tail: SmallVec<[Piece<'a>; 6]> = SmallVec::new();
        if frame.last_line_open {
            tail.push(crlf);
        }
        if self.max_forwards == MaxForwardsEdit::Decrement {
            match headers.iter().find(|h| h.name == HeaderName::MaxForwards) {
                Some(h) if !is_removed(h) => {
                    let value = match msg.max_forwards() {
                        Ok(0) => return Err(EditError::MaxForwardsExhausted),
                        Ok(n) => u64::from(n - 1),
                        Err(_) => 70,
                    };
                    push(out, h.value_start, h.value_end, &[Piece::Num(value)]);
                }
                _ => tail.extend([Piece::Text(b"Max-Forwards: 70\r\n")]),
            }
        }
        // Record-Route / Path without existing values go to the tail.
        for (name, values, label) in [
            (
                HeaderName::RecordRoute,
                &self.record_routes,
                &b"Record-Route: "[..],
            ),
            (HeaderName::Path, &self.paths, &b"Path: "[..]),
        ] {
            if !values.is_empty() && !headers.iter().any(|h| h.name == name) {
                for v in values.iter().rev() {
                    tail.extend([Piece::Text(label), Piece::Text(v.as_bytes()), crlf]);
                }
            }
        }
        for (n, v) in &self.added {
            tail.extend([
                Piece::Text(n.as_bytes()),
                Piece::Text(b": "),
                Piece::Text(v.as_bytes()),
                crlf,
            ]);
        }

        // Body and Content-Length.
        let mut body_splice: Option<&'a [u8]> = None;
        let cl_entries = || {
            headers
                .iter()
                .filter(|h| h.name == HeaderName::ContentLength)
        };
        let new_len = match self.body {
            Some((content_type, body)) => {
                body_splice = Some(body);
                if let Some(ct) = content_type {
                    for h in headers
                        .iter()
                        .filter(|h| h.name == HeaderName::ContentType && !is_removed(h))
                    {
                        push(out, h.line_start, h.line_end, &[]);
                    }
                    tail.extend([
                        Piece::Text(b"Content-Type: "),
                        Piece::Text(ct.as_bytes()),
                        crlf,
                    ]);
                }
                Some(body.len())
            }
            None if self.ensure_content_length && cl_entries().next().is_none() => {
                Some(msg.body().len())
            }
            None => None,
        };
        if let Some(len) = new_len {
            let mut first = true;
            for h in cl_entries().filter(|h| !is_removed(h)) {
                if first {
                    push(out, h.value_start, h.value_end, &[Piece::Num(len as u64)]);
                    first = false;
                } else {
                    push(out, h.line_start, h.line_end, &[]);
                }
            }
            if first {
                tail.extend([
                    Piece::Text(b"Content-Length: "),
                    Piece::Num(len as u64),
                    crlf,
                ]);
            }
        }

        // An unterminated last header line needs a CRLF before new lines,
        // unless that line is removed.
        if frame.last_line_open {
            let last_removed = headers.last().is_some_and(|h| {
                out.iter()
                    .any(|s| s.start == h.line_start && s.end == h.line_end && s.pieces.is_empty())
            });
            if last_removed {
                tail.remove(0);
            }
        }
        let tail_added = !tail.is_empty();
        if tail_added {
            push(out, frame.head_end, frame.head_end, &tail);
        }
        // A missing or broken empty line (datagram cut short) is replaced
        // by a proper one when anything is added or the body changes.
        if frame.no_blank_line && (tail_added || body_splice.is_some()) {
            push(out, frame.head_end, frame.body_start, &[crlf]);
        }
        // After the head's tail: when the message had no empty line, both
        // start at the same offset and the body must come last.
        if let Some(body) = body_splice {
            push(out, frame.body_start, frame.body_end, &[Piece::Text(body)]);
        }
        Ok(())
    }
}

/// One comma-separated value of a list header: its line and its span.
#[derive(Clone, Copy, Debug)]
struct Element {
    entry: usize,
    start: u32,
    end: u32,
}

fn elements(msg: &Message, name: HeaderName) -> SmallVec<[Element; 8]> {
    let mut out = SmallVec::new();
    for (i, h) in msg
        .frame()
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.name == name)
    {
        let line = msg.entry_value(h);
        let bytes = line.as_bytes();
        let mut pos = 0;
        loop {
            let end = next_top_comma(bytes, pos);
            let raw = line.get(pos..end).unwrap_or_default();
            let t = trim_lws(raw);
            if !t.is_empty() {
                let s = h.value_start + offset_in(line, t);
                out.push(Element {
                    entry: i,
                    start: s,
                    end: s + t.len() as u32,
                });
            }
            if end >= bytes.len() {
                break;
            }
            pos = end + 1;
        }
    }
    out
}

/// Removes the first `n` values of `name`: whole lines when all their
/// values go, else the leading values of the line up to the next value.
fn pop_front(
    msg: &Message,
    name: HeaderName,
    n: usize,
    emit: &mut dyn FnMut(u32, u32),
) -> Result<(), EditError> {
    let elems = elements(msg, name);
    if elems.len() < n {
        return Err(EditError::NothingToRemove(name));
    }
    let headers = &msg.frame().headers;
    let mut i = 0;
    while i < n {
        let Some(e) = elems.get(i) else { break };
        let entry = e.entry;
        let in_line = elems.iter().filter(|x| x.entry == entry).count();
        let popped_in_line = elems
            .iter()
            .skip(i)
            .take(n - i)
            .filter(|x| x.entry == entry)
            .count();
        let Some(h) = headers.get(entry) else { break };
        if popped_in_line == in_line {
            emit(h.line_start, h.line_end);
        } else {
            let next = elems
                .get(i + popped_in_line)
                .map_or(h.value_end, |x| x.start);
            emit(h.value_start, next);
        }
        i += popped_in_line;
    }
    Ok(())
}

/// Span removing the last value: the whole line if alone, else from the end
/// of the previous value in the line (its comma included).
fn remove_span_last(msg: &Message, elems: &[Element]) -> (u32, u32) {
    let headers = &msg.frame().headers;
    let Some(last) = elems.last() else {
        return (0, 0);
    };
    let prev_same_line = elems.iter().rev().nth(1).filter(|p| p.entry == last.entry);
    match (prev_same_line, headers.get(last.entry)) {
        (Some(p), _) => (p.end, last.end),
        (None, Some(h)) => (h.line_start, h.line_end),
        (None, None) => (last.start, last.end),
    }
}

/// Byte offset of `inner` within `outer` (both slices of the same buffer).
fn offset_in(outer: &str, inner: &str) -> u32 {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize) as u32
}

/// A Via parameter: name and value.
type ViaParam<'v> = (&'v str, Option<&'v str>);

/// The first `rport` and `received` parameters of `via` (the stamp edits
/// the first), in one pass over its parameters.
fn via_stamp_params(via: Via<'_>) -> (Option<ViaParam<'_>>, Option<ViaParam<'_>>) {
    let (mut rport, mut received) = (None, None);
    for (n, v) in via.params.iter() {
        if n.eq_ignore_ascii_case("rport") {
            rport = rport.or(Some((n, v)));
        } else if n.eq_ignore_ascii_case("received") {
            received = received.or(Some((n, v)));
        }
    }
    (rport, received)
}

/// The number of bytes a splice writes.
fn spliced_len(s: &Splice<'_>) -> usize {
    s.pieces
        .iter()
        .map(|p| match *p {
            Piece::Text(t) => t.len(),
            Piece::Num(n) => num_len(n),
        })
        .sum()
}

fn num_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn shift_span(span: Span, shift: &impl Fn(u32) -> u32) -> Span {
    Span {
        start: shift(span.start),
        end: shift(span.end),
    }
}

/// Writes `pieces` in order.
fn put_pieces(out: &mut BytesMut, pieces: &[Piece<'_>]) {
    for p in pieces {
        match *p {
            Piece::Text(t) => out.put_slice(t),
            Piece::Num(n) => put_num(out, n),
        }
    }
}

fn put_num(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(buf.get(i..).unwrap_or_default());
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
