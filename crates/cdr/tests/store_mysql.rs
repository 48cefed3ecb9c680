//! The store suite against a real MariaDB server started by the test
//! (`mariadb-install-db` + `mariadbd` on a free loopback port, password
//! auth). Skipped with a message when MariaDB is not installed.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use common::servers::MariaDb;
use voxline_cdr::{CdrStore, Dialect, TimeRange};

#[tokio::test]
async fn suite_on_mariadb() {
    let Some(server) = MariaDb::start() else {
        return;
    };
    let store = CdrStore::open(&server.url()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::MySql);
    common::suite(&store).await;
    let again = CdrStore::open(&server.url()).await.unwrap();
    assert_eq!(again.count(TimeRange::all()).await.unwrap(), 2515);
}
