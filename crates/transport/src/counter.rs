//! Counter handles registered once per call site.
//!
//! `metrics::counter!` looks its key up in the recorder's registry on every
//! call (hash, shard lock, handle clone and drop): on the per-datagram and
//! per-message paths that was about 1.5 % of a proxy's core. A handle is
//! registered the first time its call site runs instead. The node installs
//! its recorder before it handles any traffic; a handle registered before a
//! recorder exists counts nowhere (as `metrics::counter!` would then).

/// `metrics::counter!` with literal name and labels, registered once.
#[macro_export]
macro_rules! counter_once {
    ($name:literal $(, $k:literal => $v:literal)* $(,)?) => {{
        static HANDLE: ::std::sync::OnceLock<::metrics::Counter> = ::std::sync::OnceLock::new();
        HANDLE.get_or_init(|| ::metrics::counter!($name $(, $k => $v)*))
    }};
}

/// One counter per value of a label with a small, fixed set of values.
pub struct CounterSet<const N: usize> {
    name: &'static str,
    label: &'static str,
    handles: [std::sync::OnceLock<metrics::Counter>; N],
}

impl<const N: usize> CounterSet<N> {
    /// The set of counter `name` over `label`.
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        CounterSet {
            name,
            label,
            handles: [const { std::sync::OnceLock::new() }; N],
        }
    }

    /// Adds one to the counter for `value`, the `index`-th value of the
    /// label (an `index` of N or more counts nowhere).
    pub fn increment(&self, index: usize, value: &'static str) {
        if let Some(cell) = self.handles.get(index) {
            cell.get_or_init(|| metrics::counter!(self.name, self.label => value))
                .increment(1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::CounterSet;

    /// Counts registrations and increments per key.
    #[derive(Default)]
    struct Counting {
        registrations: AtomicU64,
        values: Mutex<HashMap<String, Arc<AtomicU64>>>,
    }

    impl Recorder for Counting {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.registrations.fetch_add(1, Ordering::Relaxed);
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let cell = self.values.lock().unwrap().entry(name).or_default().clone();
            Counter::from_arc(cell)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn handles_register_once_and_count_under_their_labels() {
        static SET: CounterSet<2> = CounterSet::new("test_set_total", "kind");
        let recorder = Counting::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                crate::counter_once!("test_once_total", "a" => "b").increment(1);
                SET.increment(1, "second");
            }
            SET.increment(0, "first");
            SET.increment(7, "out of range");
        });
        let values = recorder.values.lock().unwrap();
        let get = |k: &str| values.get(k).map(|v| v.load(Ordering::Relaxed));
        assert_eq!(get("test_once_total{a=b}"), Some(3));
        assert_eq!(get("test_set_total{kind=second}"), Some(3));
        assert_eq!(get("test_set_total{kind=first}"), Some(1));
        assert_eq!(values.len(), 3);
        assert_eq!(recorder.registrations.load(Ordering::Relaxed), 3);
    }
}
