//! Key names under the configured prefix and the keyspace notifications
//! about them.
//!
//! - `<prefix>:call:<call-id>`: a [`SessionRecord`](super::SessionRecord).
//! - `<prefix>:relay:<relay-id>`: a [`RelayInfo`](super::RelayInfo).
//! - `<prefix>:hb:<relay-id>`: heartbeat (value: write time), expires after
//!   the heartbeat timeout.
//! - `<prefix>:lock:<relay-id>`: held by the standby taking that relay over.

/// What a key under the prefix is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A session, by call-id.
    Call(String),
    /// A relay's info record.
    Relay(String),
    /// A relay's heartbeat.
    Heartbeat(String),
    /// A takeover lock.
    Lock(String),
}

/// What happened to a key (keyspace notification event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvent {
    /// Written (`set`).
    Set,
    /// Gone: `del`, `expired` or `evicted`.
    Gone,
    /// Anything else (`expire`, `rename_*`, ...): ignored.
    Other,
}

impl KeyEvent {
    /// Classifies a notification's event name.
    pub fn parse(event: &[u8]) -> KeyEvent {
        match event {
            b"set" => KeyEvent::Set,
            b"del" | b"expired" | b"evicted" => KeyEvent::Gone,
            _ => KeyEvent::Other,
        }
    }
}

/// Key names of one prefix in one Redis database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
    db: i64,
}

impl KeySpace {
    /// Keys under `prefix` in database `db`.
    pub fn new(prefix: &str, db: i64) -> KeySpace {
        KeySpace {
            prefix: prefix.to_owned(),
            db,
        }
    }

    /// A session's key.
    pub fn call(&self, call_id: &str) -> String {
        format!("{}:call:{call_id}", self.prefix)
    }

    /// A relay's info key.
    pub fn relay(&self, relay_id: &str) -> String {
        format!("{}:relay:{relay_id}", self.prefix)
    }

    /// A relay's heartbeat key.
    pub fn heartbeat(&self, relay_id: &str) -> String {
        format!("{}:hb:{relay_id}", self.prefix)
    }

    /// The takeover lock for a relay.
    pub fn lock(&self, relay_id: &str) -> String {
        format!("{}:lock:{relay_id}", self.prefix)
    }

    /// `SCAN MATCH` pattern for every key under the prefix.
    pub fn scan_pattern(&self) -> String {
        format!("{}:*", glob_escape(&self.prefix))
    }

    /// `PSUBSCRIBE` pattern for notifications about keys under the prefix.
    pub fn notification_pattern(&self) -> String {
        format!("__keyspace@{}__:{}:*", self.db, glob_escape(&self.prefix))
    }

    /// What `key` is, if it is under the prefix.
    pub fn classify(&self, key: &[u8]) -> Option<KeyKind> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        let (kind, id) = rest.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind {
            "call" => Some(KeyKind::Call(id)),
            "relay" => Some(KeyKind::Relay(id)),
            "hb" => Some(KeyKind::Heartbeat(id)),
            "lock" => Some(KeyKind::Lock(id)),
            _ => None,
        }
    }

    /// The key a notification channel (`__keyspace@<db>__:<key>`) is about.
    pub fn classify_channel(&self, channel: &[u8]) -> Option<KeyKind> {
        let head = format!("__keyspace@{}__:", self.db);
        let key = channel.strip_prefix(head.as_bytes())?;
        self.classify(key)
    }
}

/// Escapes Redis glob metacharacters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a `notify-keyspace-events` value delivers what followers need:
/// keyspace channel (`K`) with generic (`g`: del), string (`$`: set) and
/// expired (`x`) events; `A` covers the last three.
pub fn notifications_sufficient(flags: &str) -> bool {
    let has = |c: char| flags.contains(c);
    has('K') && (has('A') || (has('g') && has('$') && has('x')))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_classify() {
        let ks = KeySpace::new("vx:relay", 3);
        assert_eq!(ks.call("abc:def@host"), "vx:relay:call:abc:def@host");
        assert_eq!(
            ks.classify(ks.call("abc:def@host").as_bytes()),
            Some(KeyKind::Call("abc:def@host".into()))
        );
        assert_eq!(
            ks.classify(ks.heartbeat("r1").as_bytes()),
            Some(KeyKind::Heartbeat("r1".into()))
        );
        assert_eq!(
            ks.classify(ks.relay("r1").as_bytes()),
            Some(KeyKind::Relay("r1".into()))
        );
        assert_eq!(
            ks.classify(ks.lock("r1").as_bytes()),
            Some(KeyKind::Lock("r1".into()))
        );
        assert_eq!(ks.classify(b"vx:relay:call:"), None);
        assert_eq!(ks.classify(b"vx:relayx:call:a"), None);
        assert_eq!(ks.classify(b"other:call:a"), None);
        assert_eq!(ks.classify(b"vx:relay:what:a"), None);
        assert_eq!(ks.classify(&[0xff, 0xfe]), None);
        assert_eq!(
            ks.classify_channel(b"__keyspace@3__:vx:relay:hb:r2"),
            Some(KeyKind::Heartbeat("r2".into()))
        );
        assert_eq!(ks.classify_channel(b"__keyspace@0__:vx:relay:hb:r2"), None);
        assert_eq!(ks.notification_pattern(), "__keyspace@3__:vx:relay:*");
        assert_eq!(KeySpace::new("a*b", 0).scan_pattern(), "a\\*b:*");
    }

    #[test]
    fn events_and_notification_flags() {
        assert_eq!(KeyEvent::parse(b"set"), KeyEvent::Set);
        for e in [&b"del"[..], b"expired", b"evicted"] {
            assert_eq!(KeyEvent::parse(e), KeyEvent::Gone);
        }
        assert_eq!(KeyEvent::parse(b"expire"), KeyEvent::Other);
        assert!(notifications_sufficient("AKE"));
        assert!(notifications_sufficient("Kg$x"));
        assert!(notifications_sufficient("KEA"));
        assert!(!notifications_sufficient(""));
        assert!(!notifications_sufficient("EA"), "keyevent only");
        assert!(!notifications_sufficient("Kg$"), "no expired events");
    }
}
