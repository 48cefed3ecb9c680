//! Helpers for tests (feature `test-util`).

/// Whether raw sockets (CAP_NET_RAW) can be opened here, for tests of
/// [`crate::ForwardingIo::Raw`]. Panics if not and `VOXLINE_REQUIRE_RAW` is
/// set (the test script sets it when it runs as root), so raw I/O is never
/// left untested by accident.
pub fn raw_permitted() -> bool {
    let ok = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .is_ok();
    assert!(
        ok || std::env::var_os("VOXLINE_REQUIRE_RAW").is_none(),
        "VOXLINE_REQUIRE_RAW is set but raw sockets cannot be opened"
    );
    if !ok {
        eprintln!("raw sockets not permitted (CAP_NET_RAW): raw I/O not tested");
    }
    ok
}
