//! Parser throughput: frame a typical INVITE with SDP and a REGISTER with
//! Authorization, then read the values a proxy needs for every message
//! (top Via branch, CSeq, Call-ID, From and To tags); the same work through
//! `ezk-sip-types` for comparison.
//!
//! Each case is measured twice: wall time (criterion's default) and the
//! thread's CPU time, which excludes time the thread spent preempted on a
//! busy machine.
//!
//! Run pinned: `taskset -c 1 cargo bench -p voxline-sip --bench parse`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const INVITE: &[u8] = include_bytes!("../tests/data/invite.sip");
const REGISTER: &[u8] = include_bytes!("../tests/data/register.sip");

/// The work a proxy does per message with voxline-sip.
fn voxline(buf: &Bytes) -> usize {
    let msg = voxline_sip::Message::parse(buf.clone()).expect("frames");
    let via = msg.top_via().expect("via");
    let cseq = msg.cseq().expect("cseq");
    let call_id = msg.call_id().expect("call-id");
    let from_tag = msg.from_tag();
    let to_tag = msg.to_tag();
    via.branch.map_or(0, str::len)
        + cseq.seq as usize
        + call_id.len()
        + from_tag.map_or(0, str::len)
        + to_tag.map_or(0, str::len)
        + msg.body().len()
}

/// The same work with ezk-sip-types: pull the lines, parse the start line
/// and every header line into its header map, cut the body by
/// Content-Length, then decode Via, CSeq, Call-ID, From and To.
fn ezk(buf: &Bytes) -> usize {
    use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::{Headers, Name};

    let mut parser = PullParser::new(buf, 0);
    let first = parser.next().expect("line").expect("complete");
    let first = std::str::from_utf8(first).expect("utf8");
    let (_, line) = MessageLine::parse(buf)(first).expect("start line");
    let mut headers = Headers::with_capacity(16);
    for l in &mut parser {
        let l = std::str::from_utf8(l.expect("complete")).expect("utf8");
        let (_, Line { name, value }) = Line::parse(buf, l).expect("header line");
        headers.insert(name, value);
    }
    let head_end = parser.head_end();
    let len = headers.get_named::<ContentLength>().map_or(0, |c| c.0);
    let body = buf.slice(head_end..head_end + len);
    let via: Via = headers.get_named().expect("via");
    let cseq: CSeq = headers.get_named().expect("cseq");
    let call_id: CallID = headers.get_named().expect("call-id");
    let from: FromTo = headers.get(Name::FROM).expect("from");
    let to: FromTo = headers.get(Name::TO).expect("to");
    black_box(line.is_request());
    via.params.get_val("branch").map_or(0, |b| b.len())
        + cseq.cseq as usize
        + call_id.0.len()
        + from.tag.map_or(0, |t| t.len())
        + to.tag.map_or(0, |t| t.len())
        + body.len()
}

fn cases<M: criterion::measurement::Measurement>(c: &mut Criterion<M>, clock: &str) {
    let invite = Bytes::from_static(INVITE);
    let register = Bytes::from_static(REGISTER);
    // Both parsers must agree before they are timed.
    assert_eq!(voxline(&invite), ezk(&invite));
    assert_eq!(voxline(&register), ezk(&register));

    let mut g = c.benchmark_group(format!("parse-{clock}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite/voxline", |b| b.iter(|| voxline(black_box(&invite))));
    g.bench_function("invite/ezk-sip-types", |b| {
        b.iter(|| ezk(black_box(&invite)))
    });
    g.bench_function("register/voxline", |b| {
        b.iter(|| voxline(black_box(&register)))
    });
    g.bench_function("register/ezk-sip-types", |b| {
        b.iter(|| ezk(black_box(&register)))
    });
    // Forwarding: parse, then splice a Via, Record-Route and Max-Forwards
    // into a reused buffer and pop the Route.
    let mut out = bytes::BytesMut::with_capacity(4096);
    g.bench_function("forward-invite/voxline", |b| {
        b.iter(|| {
            let msg = voxline_sip::Message::parse(black_box(&invite).clone()).expect("frames");
            out.clear();
            msg.edit()
                .push_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-proxy-1")
                .add_record_route("<sip:192.0.2.1;lr>")
                .decrement_max_forwards()
                .pop_route()
                .write_to(&mut out)
                .expect("edits");
            out.len()
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    cases(c, "wall");
}

fn cpu(c: &mut Criterion<cpu_time::ThreadCpuTime>) {
    cases(c, "cpu");
}

/// A criterion measurement of the calling thread's CPU time.
mod cpu_time {
    use criterion::Throughput;
    use criterion::measurement::{Measurement, ValueFormatter};
    use nix::time::{ClockId, clock_gettime};

    /// Thread CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
    pub struct ThreadCpuTime;

    fn now_ns() -> u64 {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0)
    }

    impl Measurement for ThreadCpuTime {
        type Intermediate = u64;
        type Value = u64;
        fn start(&self) -> u64 {
            now_ns()
        }
        fn end(&self, start: u64) -> u64 {
            now_ns().saturating_sub(start)
        }
        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }
        fn zero(&self) -> u64 {
            0
        }
        fn to_f64(&self, v: &u64) -> f64 {
            *v as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            &Nanos
        }
    }

    struct Nanos;

    impl ValueFormatter for Nanos {
        fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
            let (factor, unit) = if typical < 1e3 {
                (1.0, "ns")
            } else if typical < 1e6 {
                (1e-3, "µs")
            } else {
                (1e-6, "ms")
            };
            values.iter_mut().for_each(|v| *v *= factor);
            unit
        }
        fn scale_throughputs(
            &self,
            typical: f64,
            throughput: &Throughput,
            values: &mut [f64],
        ) -> &'static str {
            let per = match *throughput {
                Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                    n as f64
                }
                Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n as f64,
                Throughput::Bits(n) => n as f64,
            };
            let per_sec = per * 1e9 / typical;
            let (factor, unit) = if per_sec < 1e3 {
                (1.0, "elem/s")
            } else if per_sec < 1e6 {
                (1e-3, "Kelem/s")
            } else {
                (1e-6, "Melem/s")
            };
            values.iter_mut().for_each(|v| *v = per * 1e9 / *v * factor);
            unit
        }
        fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}

fn short() -> Criterion {
    Criterion::default()
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
}

criterion_group! {
    name = wall_benches;
    config = short();
    targets = wall
}
criterion_group! {
    name = cpu_benches;
    config = short().with_measurement(cpu_time::ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
