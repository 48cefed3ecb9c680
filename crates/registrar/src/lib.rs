//! The registrar role: REGISTER processing per RFC 3261 §10.3 with Path
//! (RFC 3327) and outbound basics (RFC 5626), digest authentication, and
//! the location store for bindings.
//!
//! The reading of a REGISTER into a location update is pure
//! ([`request::read_register`]); [`Registrar::handle`] adds authentication,
//! the store and the response.

pub mod config;
pub mod request;

pub use config::RegistrarConfig;

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use voxline_location::{Binding, LocationError, LocationStore, Timestamp};
use voxline_server::ServerRequest;
use voxline_sip::{HeaderName, Role, ValidationPolicy, validate_extensions};
use voxline_sip_auth::{AuthOutcome, SipAuth};

use crate::request::{Refusal, Registration, local_address_of_record, read_registration};

/// The registrar's counters, registered once (a labelled `counter!` looks
/// its key up in the recorder's registry on every call). Created on first
/// use, after the node has installed its recorder.
struct Metrics {
    ok: metrics::Counter,
    refused: metrics::Counter,
    error: metrics::Counter,
    forbidden: metrics::Counter,
    retransmissions: metrics::Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    ok: metrics::counter!("voxline_registrar_registers_total", "result" => "ok"),
    refused: metrics::counter!("voxline_registrar_registers_total", "result" => "refused"),
    error: metrics::counter!("voxline_registrar_registers_total", "result" => "error"),
    forbidden: metrics::counter!("voxline_registrar_forbidden_total"),
    retransmissions: metrics::counter!("voxline_registrar_retransmissions_total"),
});

/// Option tags the registrar supports.
pub const SUPPORTED: &[&str] = &["path", "outbound"];

/// The registrar of a node.
pub struct Registrar {
    config: RegistrarConfig,
    location: LocationStore,
    auth: Option<SipAuth>,
}

impl Registrar {
    /// A registrar over `location`; `auth` is required when
    /// `config.authenticate` is set.
    pub fn new(config: RegistrarConfig, location: LocationStore, auth: Option<SipAuth>) -> Self {
        Registrar {
            config,
            location,
            auth,
        }
    }

    /// The location store.
    pub fn location(&self) -> &LocationStore {
        &self.location
    }

    /// Whether REGISTER is answered without a server transaction
    /// ([`RegistrarConfig::stateless`]).
    pub fn is_stateless(&self) -> bool {
        self.config.stateless
    }

    /// Handles one REGISTER for one of our domains and answers it.
    ///
    /// The SIP core has validated the request's syntax already
    /// (`validate_request` as a proxy); what only a registrar checks
    /// is checked here: Require (as a UAS), then a SIP or SIPS To URI
    /// while reading the address-of-record (`Role::Registrar` would parse
    /// the To once more for that).
    ///
    /// It takes the registrar by `Arc`, so that its future owns everything
    /// it uses and can be spawned as it is.
    pub async fn handle(
        self: Arc<Self>,
        req: ServerRequest,
        is_local_domain: impl Fn(&str) -> bool,
    ) {
        let msg = req.message();
        let policy = ValidationPolicy {
            role: Role::Uas,
            supported: SUPPORTED,
            ..ValidationPolicy::default()
        };
        if let Err(rejection) = validate_extensions(msg, &policy) {
            let _ = req.send(rejection.response(msg, Some(req.to_tag())));
            return;
        }
        // RFC 3261 §10.3: the address-of-record and its domain (steps 1
        // and 5), then authentication (steps 3-4) before the Contact
        // processing (steps 6-7): a challenged REGISTER costs no more.
        let (aor, user_len) = match local_address_of_record(msg, &is_local_domain) {
            Ok(a) => a,
            Err(refusal) => return refuse(&req, refusal),
        };
        if self.config.authenticate {
            let Some(auth) = &self.auth else {
                let _ = req.send(
                    req.response(500, "Server Internal Error - authentication not configured")
                        .build(),
                );
                return;
            };
            let (user, domain) = aor.split_at(user_len);
            let domain = domain.get(1..).unwrap_or_default();
            match auth.check(&req, domain).await {
                AuthOutcome::Answered => return,
                AuthOutcome::Accepted(who) => {
                    if who.username != user || !who.realm.eq_ignore_ascii_case(domain) {
                        METRICS.forbidden.increment(1);
                        let _ = req.send(
                            req.response(
                                403,
                                "Forbidden - credentials do not match the address-of-record",
                            )
                            .build(),
                        );
                        return;
                    }
                }
            }
        }
        let registration = match read_registration(msg, req.peer(), &self.config, aor) {
            Ok(r) => r,
            Err(refusal) => return refuse(&req, refusal),
        };
        let now = Timestamp::now();
        let result = match &registration {
            Registration::Query { aor } => self.location.lookup(aor, now).await,
            Registration::Update { aor, update } => {
                match self.location.apply(aor, update, now).await {
                    // The same Call-ID and CSeq again: a retransmission
                    // (without a transaction to absorb it, or after its
                    // transaction ended). It gets what the first copy got.
                    Err(LocationError::OutOfOrder { cseq, stored_cseq }) if cseq == stored_cseq => {
                        METRICS.retransmissions.increment(1);
                        self.location.lookup(aor, now).await
                    }
                    other => other.map(|a| a.bindings),
                }
            }
        };
        match result {
            Ok(bindings) => {
                METRICS.ok.increment(1);
                self.accept(&req, &bindings, now);
            }
            Err(e) => store_error(&req, &e),
        }
    }

    /// 200 OK listing every current binding with its remaining expires.
    fn accept(&self, req: &ServerRequest, bindings: &[Binding], now: Timestamp) {
        let msg = req.message();
        // All Contact values in one buffer, cut into the builder's slices.
        let mut text = String::with_capacity(bindings.len() * 96);
        let mut ends = Vec::with_capacity(bindings.len());
        for b in bindings {
            write_contact_value(&mut text, b, now);
            ends.push(text.len());
        }
        let with_path =
            msg.has(HeaderName::Path) && msg.supported().any(|t| t.eq_ignore_ascii_case("path"));
        let mut b = req.response(200, "OK");
        let mut start = 0;
        for &end in &ends {
            b = b.header("Contact", text.get(start..end).unwrap_or_default());
            start = end;
        }
        if with_path {
            for p in msg.header_lines(HeaderName::Path) {
                b = b.header("Path", p);
            }
        }
        let date = current_date();
        let b = b
            .header("Date", &date)
            .header("Supported", "path, outbound");
        let _ = req.send(b.build());
    }
}

/// The Date header value for now, formatted once per second per thread.
fn current_date() -> String {
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if date.0 != secs || date.1.is_empty() {
            *date = (
                secs,
                http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            );
        }
        date.1.clone()
    })
}

thread_local! {
    /// The Date header value of the current second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends `<uri>;params;expires=N` for one binding.
fn write_contact_value(v: &mut String, b: &Binding, now: Timestamp) {
    v.push('<');
    v.push_str(&b.contact);
    v.push('>');
    v.push_str(&b.params);
    if let Some(i) = &b.instance {
        v.push_str(";+sip.instance=");
        v.push_str(i);
    }
    if let Some(r) = b.reg_id {
        v.push_str(";reg-id=");
        push_u64(v, u64::from(r));
    }
    if b.q != 1000 {
        v.push_str(";q=");
        push_u64(v, u64::from(b.q / 1000));
        v.push('.');
        let frac = b.q % 1000;
        v.push(char::from(b'0' + (frac / 100 % 10) as u8));
        v.push(char::from(b'0' + (frac / 10 % 10) as u8));
        v.push(char::from(b'0' + (frac % 10) as u8));
    }
    v.push_str(";expires=");
    push_u64(v, b.expires_in(now));
}

/// Appends the decimal digits of `n` (no formatting machinery).
fn push_u64(v: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        v.push(char::from(d));
    }
}

fn refuse(req: &ServerRequest, refusal: Refusal) {
    METRICS.refused.increment(1);
    let reply = match refusal {
        Refusal::BadRequest(reason) => req.response(400, reason).build(),
        Refusal::IntervalTooBrief(min) => {
            let min = min.to_string();
            req.response(423, "Interval Too Brief")
                .header("Min-Expires", &min)
                .build()
        }
        Refusal::ForeignDomain => req
            .response(403, "Forbidden - domain not served here")
            .build(),
    };
    let _ = req.send(reply);
}

fn store_error(req: &ServerRequest, e: &LocationError) {
    METRICS.error.increment(1);
    let reply = match e {
        LocationError::OutOfOrder { .. } => req
            .response(500, "Server Internal Error - CSeq out of order")
            .header("Retry-After", "1")
            .build(),
        LocationError::TooManyContacts { .. } => {
            req.response(403, "Forbidden - too many contacts").build()
        }
        LocationError::Invalid(_) => req.response(400, "Bad Request - invalid contact").build(),
        LocationError::Unavailable(_) | LocationError::Contention => {
            tracing::warn!(error = %e, "location store unavailable; answering 503");
            let retry = rand::random_range(5..=30u32).to_string();
            req.response(503, "Service Unavailable - location store unreachable")
                .header("Retry-After", &retry)
                .build()
        }
        other => {
            tracing::error!(error = %other, "location store failed");
            req.response(500, "Server Internal Error").build()
        }
    };
    let _ = req.send(reply);
}

/// An RFC 7231 IMF-fixdate (the SIP-date of RFC 3261 §20.17).
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {mon} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_values_carry_params_q_and_expires() {
        let now = Timestamp::from_millis(1_000_000);
        let mut b = Binding {
            contact: "sip:alice@192.0.2.1:5060".into(),
            params: ";transport=udp".into(),
            instance: Some("\"<urn:uuid:1>\"".into()),
            reg_id: Some(2),
            q: 500,
            expires: Timestamp::from_millis(1_000_000 + 3_600_000),
            call_id: "c".into(),
            cseq: 1,
            source: voxline_location::Source {
                transport: voxline_location::Transport::Udp,
                remote: "192.0.2.1:5060".parse().unwrap(),
                local: "192.0.2.2:5060".parse().unwrap(),
            },
            path: Vec::new(),
            user_agent: None,
            registered_at: now,
            nat: false,
        };
        let mut v = String::new();
        write_contact_value(&mut v, &b, now);
        assert_eq!(
            v,
            "<sip:alice@192.0.2.1:5060>;transport=udp;+sip.instance=\"<urn:uuid:1>\";reg-id=2;q=0.500;expires=3600"
        );
        b.q = 1000;
        b.instance = None;
        b.reg_id = None;
        b.params.clear();
        b.expires = Timestamp::from_millis(1_000_000 + 7_000);
        v.clear();
        write_contact_value(&mut v, &b, now);
        assert_eq!(v, "<sip:alice@192.0.2.1:5060>;expires=7");
        let mut n = String::new();
        push_u64(&mut n, 0);
        push_u64(&mut n, u64::MAX);
        assert_eq!(n, format!("0{}", u64::MAX));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_316_708);
        assert_eq!(http_date(t), "Sun, 22 Nov 2026 03:05:08 GMT");
        assert!(voxline_sip::is_sip_date(&http_date(t)));
    }
}
