//! The same store suite against a real MariaDB server started by the test
//! (`mariadb-install-db` + `mariadbd` on a free loopback port, password
//! auth). Skipped with a message when MariaDB is not installed.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use common::servers::MariaDb;
use voxline_auth::{Dialect, SubscriberStore};

#[tokio::test]
async fn suite_on_mariadb() {
    let Some(server) = MariaDb::start() else {
        return;
    };
    let store = SubscriberStore::open(&server.url()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::MySql);
    common::suite::provisioning(&store).await;
    let auth = common::suite::digest_auth(store);
    common::suite::digest_exchange(&auth).await;
    let again = SubscriberStore::open(&server.url()).await.unwrap();
    assert!(again.lookup("alice", "localhost").await.unwrap().is_some());
}
