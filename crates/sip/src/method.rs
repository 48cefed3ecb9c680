//! Request methods: the RFC 3261 set and common extensions as variants,
//! anything else as an extension token. Methods are case-sensitive.

use crate::lex::is_token;

/// A SIP request method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// OPTIONS (RFC 3261)
    Options,
    /// REGISTER (RFC 3261)
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// Any other method token, exactly as received.
    Extension(Box<str>),
}

impl Method {
    /// Parses a method token. `None` if `s` is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            other if is_token(other) => Method::Extension(other.into()),
            _ => return None,
        })
    }

    /// The position of a known method in [`LABELS`](Self::LABELS), `None`
    /// for an extension.
    fn known(&self) -> Option<usize> {
        Some(match self {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Bye => 2,
            Method::Cancel => 3,
            Method::Options => 4,
            Method::Register => 5,
            Method::Prack => 6,
            Method::Subscribe => 7,
            Method::Notify => 8,
            Method::Publish => 9,
            Method::Info => 10,
            Method::Refer => 11,
            Method::Message => 12,
            Method::Update => 13,
            Method::Extension(_) => return None,
        })
    }

    /// The values [`label`](Self::label) takes, in [`label_index`](Self::label_index)
    /// order: the known methods' names, then `other`.
    pub const LABELS: [&'static str; 15] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
        "other",
    ];

    /// The position of [`label`](Self::label) in [`LABELS`](Self::LABELS),
    /// for per-method counters kept in an array.
    pub fn label_index(&self) -> usize {
        self.known().unwrap_or(Self::LABELS.len() - 1)
    }

    /// The name as a metric label: the method's own for the known ones,
    /// `other` for extensions (their names come from the network and would
    /// make label values without bound).
    pub fn label(&self) -> &'static str {
        Self::LABELS
            .get(self.label_index())
            .copied()
            .unwrap_or("other")
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match (self, self.known()) {
            (Method::Extension(s), _) => s,
            (_, known) => known
                .and_then(|i| Self::LABELS.get(i))
                .copied()
                .unwrap_or_default(),
        }
    }

    /// True for methods that are not in the known set.
    pub fn is_extension(&self) -> bool {
        matches!(self, Method::Extension(_))
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Method {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_index_the_known_methods_and_other() {
        for (i, name) in Method::LABELS
            .iter()
            .enumerate()
            .take(Method::LABELS.len() - 1)
        {
            let m = Method::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((m.as_str(), m.label(), m.label_index()), (*name, *name, i));
        }
        let ext = Method::Extension("FOO".into());
        assert_eq!(
            (ext.as_str(), ext.label(), ext.label_index()),
            ("FOO", "other", 14)
        );
    }

    #[test]
    fn known_and_extension() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::parse("invite"),
            Some(Method::Extension("invite".into()))
        );
        let m = Method::parse("!interesting-Method0123456789_*+`.%indeed'~");
        assert!(m.as_ref().is_some_and(Method::is_extension));
        assert_eq!(
            Method::parse("RE%47IST%45R").map(|m| m.is_extension()),
            Some(true)
        );
        assert_eq!(Method::parse("BAD METHOD"), None);
        assert_eq!(Method::parse(""), None);
        for m in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "INFO",
            "REFER",
            "MESSAGE",
            "UPDATE",
        ] {
            let p = Method::parse(m);
            assert_eq!(p.as_ref().map(Method::as_str), Some(m));
            assert!(!p.is_some_and(|p| p.is_extension()));
        }
    }
}
