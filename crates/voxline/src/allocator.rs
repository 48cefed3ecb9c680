//! The process allocator and its upkeep.
//!
//! Every message, transaction and dialog is a handful of small allocations
//! freed in another order than made; mimalloc serves that pattern at a
//! fraction of glibc malloc's cost. It returns freed pages to the system
//! lazily, though: a page freed to its arena is purged only after the
//! purge delay (one second) and only when some thread frees a page again
//! after that. A node that goes quiet after a burst — the thirty-two
//! seconds in which a wave of calls' transactions linger, a registration
//! storm, the end of the busy hour — would keep the burst's peak resident
//! until traffic came back. [`spawn_purge_tick`] keeps the purge going.

use std::hint::black_box;
use std::thread;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the purge runs. Above mimalloc's one-second purge delay, so
/// it only releases pages that have stayed free for a while.
const PURGE_INTERVAL: Duration = Duration::from_secs(2);

/// Above mimalloc's largest pooled block size (512 KiB): a block this big
/// gets a page of its own, freed to the arena at once, and that free runs
/// the arenas' deferred purge. The block is never written, so it costs
/// address space for a moment, not memory.
const NUDGE_BYTES: usize = 1 << 20;

/// Starts a thread that makes the allocator return pages that have stayed
/// free past its purge delay, every [`PURGE_INTERVAL`].
pub fn spawn_purge_tick() -> std::io::Result<()> {
    thread::Builder::new()
        .name("voxline-purge".into())
        .spawn(|| {
            loop {
                thread::sleep(PURGE_INTERVAL);
                drop(black_box(Vec::<u8>::with_capacity(NUDGE_BYTES)));
            }
        })
        .map(drop)
}
