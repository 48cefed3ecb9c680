//! Client side: building request dictionaries with Kamailio's spellings.

use super::{CommandKind, DeleteRequest, Flags, IceMode, MediaRequest, QueryRequest};
use crate::bencode::Value;

fn push_str<'a>(d: &mut Value<'a>, key: &'a str, v: &'a Option<String>) {
    if let Some(s) = v {
        d.insert(key, Value::str(s));
    }
}

impl Flags {
    pub(super) fn to_list(&self) -> Vec<Value<'static>> {
        let mut out = Vec::new();
        let table: [(bool, &'static str); 10] = [
            (self.trust_address, "trust-address"),
            (self.sip_source_address, "SIP-source-address"),
            (self.symmetric, "symmetric"),
            (self.asymmetric, "asymmetric"),
            (self.strict_source, "strict-source"),
            (self.port_latching, "port-latching"),
            (self.no_port_latching, "no-port-latching"),
            (self.media_handover, "media-handover"),
            (self.fatal, "fatal"),
            (self.fast, "fast"),
        ];
        for (on, name) in table {
            if on {
                out.push(Value::str(name));
            }
        }
        out
    }
}

impl MediaRequest {
    /// Builds the request dictionary (client side), with Kamailio's
    /// hyphenated key spellings and `supports: ["load limit"]` if set.
    pub fn to_value(&self, kind: CommandKind) -> Value<'_> {
        let mut d = Value::dict().with("command", Value::str(kind.as_str()));
        d.insert("call-id", Value::str(&self.call_id));
        d.insert("from-tag", Value::str(&self.from_tag));
        push_str(&mut d, "to-tag", &self.to_tag);
        push_str(&mut d, "via-branch", &self.via_branch);
        d.insert("sdp", Value::str(&self.sdp));
        let flags = self.flags.to_list();
        if !flags.is_empty() {
            d.insert("flags", Value::List(flags));
        }
        let r = &self.replace;
        let mut replace = Vec::new();
        for (on, name) in [
            (r.origin, "origin"),
            (r.session_name, "session-name"),
            (r.zero_address, "zero-address"),
            (r.force_increment_sdp_ver, "force-increment-sdp-ver"),
        ] {
            if on {
                replace.push(Value::str(name));
            }
        }
        if !replace.is_empty() {
            d.insert("replace", Value::List(replace));
        }
        if let Some([a, b]) = &self.direction {
            d.insert("direction", Value::List(vec![Value::str(a), Value::str(b)]));
        }
        if let Some(af) = self.address_family {
            d.insert("address-family", Value::str(af.as_str()));
        }
        if let Some(ip) = self.media_address {
            d.insert("media-address", Value::string(ip.to_string()));
        }
        if let Some(ip) = self.received_from {
            let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
            d.insert(
                "received-from",
                Value::List(vec![Value::str(fam), Value::string(ip.to_string())]),
            );
        }
        if let Some(ice) = self.ice {
            let s = match ice {
                IceMode::Remove => "remove",
                IceMode::Default => "default",
                IceMode::Force => "force",
            };
            d.insert("ICE", Value::str(s));
        }
        let m = &self.rtcp_mux;
        let mut mux = Vec::new();
        for (on, name) in [
            (m.offer, "offer"),
            (m.demux, "demux"),
            (m.accept, "accept"),
            (m.reject, "reject"),
            (m.require, "require"),
        ] {
            if on {
                mux.push(Value::str(name));
            }
        }
        if !mux.is_empty() {
            d.insert("rtcp-mux", Value::List(mux));
        }
        if let Some(tp) = self.transport_protocol {
            d.insert("transport-protocol", Value::str(tp.as_str()));
        }
        if let Some(tos) = self.tos {
            d.insert("TOS", Value::Int(tos));
        }
        push_str(&mut d, "label", &self.label);
        if !self.supports.is_empty() {
            d.insert(
                "supports",
                Value::List(self.supports.iter().map(|s| Value::str(s)).collect()),
            );
        }
        d
    }
}

impl DeleteRequest {
    /// Builds the request dictionary (client side).
    pub fn to_value(&self) -> Value<'_> {
        let mut d = Value::dict().with("command", Value::str("delete"));
        d.insert("call-id", Value::str(&self.call_id));
        push_str(&mut d, "from-tag", &self.from_tag);
        push_str(&mut d, "to-tag", &self.to_tag);
        push_str(&mut d, "via-branch", &self.via_branch);
        let flags = self.flags.to_list();
        if !flags.is_empty() {
            d.insert("flags", Value::List(flags));
        }
        d
    }
}

impl QueryRequest {
    /// Builds the request dictionary (client side).
    pub fn to_value(&self) -> Value<'_> {
        let mut d = Value::dict().with("command", Value::str("query"));
        d.insert("call-id", Value::str(&self.call_id));
        push_str(&mut d, "from-tag", &self.from_tag);
        push_str(&mut d, "to-tag", &self.to_tag);
        d
    }
}
