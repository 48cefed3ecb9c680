//! The semantic test suite every backend must pass. Each case takes a fresh
//! store; `location_suite!` turns every case into a `#[tokio::test]`, and
//! `run_all` runs them in sequence against one factory (for the cluster).
#![allow(dead_code, clippy::unwrap_used)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use voxline_location::*;

/// Keeps whatever the store needs alive (a redis-server, a temp dir).
pub type Guard = Box<dyn Any + Send>;
/// Builds a fresh, empty store with the given limits.
pub type Factory = fn(Limits) -> Pin<Box<dyn Future<Output = (LocationStore, Guard)> + Send>>;

pub fn now() -> Timestamp {
    Timestamp::from_secs(Timestamp::now().as_secs())
}

pub fn source() -> Source {
    Source {
        transport: Transport::Udp,
        remote: "198.51.100.7:40123".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
    }
}

pub fn update(call_id: &str, cseq: u32, contacts: Vec<ContactUpdate>) -> Update {
    Update {
        call_id: call_id.into(),
        cseq,
        source: source(),
        path: vec![],
        user_agent: None,
        nat: false,
        contacts: Contacts::List(contacts),
    }
}

pub fn contact(uri: &str, expires: u32, q: u16) -> ContactUpdate {
    ContactUpdate {
        q,
        ..ContactUpdate::new(uri, expires)
    }
}

mod lifecycle;
mod register;
pub use lifecycle::*;
pub use register::*;

pub fn contacts_of(b: &[Binding]) -> Vec<&str> {
    b.iter().map(|b| b.contact.as_str()).collect()
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name.
        pub const CASES: &[(&str, fn(LocationStore, Factory) -> Pin<Box<dyn Future<Output = ()> + Send>>)] = &[
            $((stringify!($name), |s, f| Box::pin($name(s, f)))),*
        ];

        /// Generate one `#[tokio::test]` per case for `$factory`.
        #[macro_export]
        macro_rules! location_suite {
            ($factory:expr) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let f: suite::Factory = $factory;
                        let (store, _guard) = f(Limits::default()).await;
                        suite::$name(store, f).await;
                    }
                )*
            };
        }
    };
}

cases!(
    register_lookup_keeps_every_field,
    refresh_requires_higher_cseq_for_same_call_id,
    new_call_id_replaces_equivalent_contact,
    lookup_orders_by_q_then_recency,
    expires_zero_and_star_remove,
    star_with_stale_cseq_is_refused,
    instance_and_reg_id_matching,
    max_contacts_refuse_and_drop_oldest,
    expiry_filters_and_expire_reports,
    remove_aor_count_and_list,
    replication_is_idempotent_and_ordered,
    subscription_sees_changes,
    invalid_input_is_refused,
);

/// Run every case in sequence, each with a fresh store from `factory`.
pub async fn run_all(factory: Factory) {
    for (name, case) in CASES {
        eprintln!("suite case {name}");
        let (store, guard) = factory(Limits::default()).await;
        case(store, factory).await;
        drop(guard);
    }
}
