//! The shared semantic suite against the memory backend, in memory only and
//! persisted to a temporary data directory.
#![allow(clippy::unwrap_used)]

mod suite;

use std::sync::Arc;

use voxline_location::*;

mod volatile {
    use super::*;

    fn factory(
        limits: Limits,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (LocationStore, suite::Guard)> + Send>>
    {
        Box::pin(async move {
            let options = MemoryOptions {
                shards: 8,
                limits,
                ..MemoryOptions::default()
            };
            let store = MemoryStore::open(options, Timestamp::now()).unwrap();
            (
                LocationStore::Memory(Arc::new(store)),
                Box::new(()) as suite::Guard,
            )
        })
    }

    location_suite!(factory);
}

mod persisted {
    use super::*;

    fn factory(
        limits: Limits,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (LocationStore, suite::Guard)> + Send>>
    {
        Box::pin(async move {
            let dir = tempfile::tempdir().unwrap();
            let options = MemoryOptions {
                limits,
                data_dir: Some(dir.path().to_path_buf()),
                fsync: FsyncPolicy::Always,
                ..MemoryOptions::default()
            };
            let store = MemoryStore::open(options, Timestamp::now()).unwrap();
            (
                LocationStore::Memory(Arc::new(store)),
                Box::new(dir) as suite::Guard,
            )
        })
    }

    location_suite!(factory);
}
