//! Memory backend persistence with real files and a real crashed process:
//! restart recovery, torn log tails, and `kill -9` right after acknowledged
//! writes.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use voxline_location::*;

fn update(call_id: &str, cseq: u32, uri: &str, expires: u32) -> Update {
    Update {
        call_id: call_id.into(),
        cseq,
        source: Source {
            transport: Transport::Udp,
            remote: "198.51.100.7:5060".parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        },
        path: vec!["<sip:edge.example.net;lr>".into()],
        user_agent: Some("test".into()),
        nat: true,
        contacts: Contacts::List(vec![ContactUpdate::new(uri, expires)]),
    }
}

fn open(dir: &Path, now: Timestamp) -> MemoryStore {
    let options = MemoryOptions {
        shards: 16,
        data_dir: Some(dir.to_path_buf()),
        ..MemoryOptions::default()
    };
    MemoryStore::open(options, now).unwrap()
}

#[test]
fn restart_recovers_state_across_snapshots_and_drops_expired() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timestamp::from_secs(Timestamp::now().as_secs());
    let mut want = HashMap::new();
    {
        let store = open(dir.path(), t);
        for i in 0..500u32 {
            let expires = if i % 5 == 0 { 10 } else { 3600 };
            let aor = format!("p{i}@example.com");
            store
                .apply(
                    &aor,
                    &update("c", 1, &format!("sip:p{i}@10.0.0.1"), expires),
                    t,
                )
                .unwrap();
            if i == 250 {
                store.snapshot().unwrap();
            }
        }
        // Refresh some after the snapshot, remove some.
        for i in (1..500u32).step_by(7) {
            let aor = format!("p{i}@example.com");
            store
                .apply(
                    &aor,
                    &update("c", 2, &format!("sip:p{i}@10.0.0.1"), 7200),
                    t,
                )
                .unwrap();
        }
        for i in (2..500u32).step_by(11) {
            store.remove_aor(&format!("p{i}@example.com"), t).unwrap();
        }
        for i in 0..500u32 {
            let aor = format!("p{i}@example.com");
            want.insert(aor.clone(), store.lookup(&aor, t.add_secs(20)).unwrap());
        }
    }
    let later = t.add_secs(20);
    let store = open(dir.path(), later);
    for (aor, bindings) in &want {
        assert_eq!(&store.lookup(aor, later).unwrap(), bindings, "{aor}");
    }
    let live = want.values().filter(|b| !b.is_empty()).count() as u64;
    assert_eq!(
        store.count(),
        Counts {
            aors: live,
            bindings: live
        }
    );
    assert!(store.recovery_stats().snapshot_records + store.recovery_stats().log_records > 0);
    // Timers were armed for every recovered AOR: all of them expire on time.
    assert!(store.expire(later).unwrap().is_empty());
    assert_eq!(store.expire(t.add_secs(7201)).unwrap().len() as u64, live);
    assert_eq!(store.count(), Counts::default());
    // open() compacted everything into one snapshot and one fresh log.
    drop(store);
    let _ = open(dir.path(), later);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".snap")).count(),
        1,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".log")).count(),
        1,
        "{files:?}"
    );
}

#[test]
fn torn_last_record_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timestamp::now();
    {
        let store = open(dir.path(), t);
        for i in 0..20 {
            store
                .apply(
                    &format!("t{i}@x"),
                    &update("c", 1, "sip:t@10.0.0.1", 600),
                    t,
                )
                .unwrap();
        }
    }
    // Half a record at the end of the newest log, as if the writer died mid-write.
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.last().unwrap())
        .unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);
    let store = open(dir.path(), t);
    assert_eq!(store.count().aors, 20);
    assert_eq!(store.recovery_stats().torn_segments, 1);
    // And it keeps working after recovery.
    store
        .apply("new@x", &update("c", 1, "sip:n@10.0.0.1", 600), t)
        .unwrap();
    drop(store);
    assert_eq!(open(dir.path(), t).count().aors, 21);
}

const WRITER_ENV: &str = "VOXLINE_LOCATION_WRITER_DIR";
const AORS: u32 = 1500;

/// Helper run as a child process by `kill_9_loses_no_acknowledged_write`:
/// writes forever (bounded), printing `ACK <aor-index> <cseq>` after each
/// acknowledged write, snapshotting now and then.
#[test]
#[ignore = "child process of kill_9_loses_no_acknowledged_write"]
fn writer_child_process() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let store = open(Path::new(&dir), Timestamp::now());
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    for i in 0..2_000_000u32 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let n = i % AORS;
        let cseq = i / AORS + 1;
        let aor = format!("k{n}@example.com");
        store
            .apply(
                &aor,
                &update(
                    &format!("cid-{n}"),
                    cseq,
                    &format!("sip:k{n}@10.0.0.1"),
                    3600,
                ),
                Timestamp::now(),
            )
            .unwrap();
        writeln!(out, "ACK {n} {cseq}").unwrap();
        out.flush().unwrap();
        if i % 1000 == 999 {
            store.snapshot().unwrap();
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "writer_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: HashMap<u32, u32> = HashMap::new();
    let mut count = 0u32;
    let record = |line: &str, acked: &mut HashMap<u32, u32>| -> bool {
        let mut f = line.split(' ');
        if f.next() != Some("ACK") {
            return false;
        }
        let (Some(Ok(n)), Some(Ok(cseq))) = (f.next().map(str::parse), f.next().map(str::parse))
        else {
            return false;
        };
        let e = acked.entry(n).or_insert(0);
        *e = (*e).max(cseq);
        true
    };
    // Kill it in the middle of its work: after 4,500 acknowledged writes
    // (three rounds over the AORs, several snapshots done).
    for line in lines.by_ref() {
        if record(&line.unwrap(), &mut acked) {
            count += 1;
            if count == 4_500 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Acknowledgements already written before the kill count too.
    for line in lines.map_while(Result::ok) {
        record(&line, &mut acked);
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was not killed: {status:?}");
    assert_eq!(count, 4_500, "child stopped early");

    let now = Timestamp::now();
    let store = open(dir.path(), now);
    for (n, cseq) in &acked {
        let b = store.lookup(&format!("k{n}@example.com"), now).unwrap();
        assert_eq!(b.len(), 1, "k{n} lost");
        assert!(
            b[0].cseq >= *cseq,
            "k{n}: recovered CSeq {} < acknowledged {cseq}",
            b[0].cseq
        );
    }
    assert_eq!(acked.len() as u32, AORS);
}
