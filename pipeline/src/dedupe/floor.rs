//! The memory floor of de-duplication, measured inside the processor (bench/dedupe.sh,
//! issue 13's cost bar): what the processor costs when, per event, the set does the least
//! an exact set of this many identities must do, and nothing else. Compiled only with the
//! `memory-floor` feature, which no Helios build enables; the bench binary built with it
//! behaves exactly as without unless `HELIOS_BENCH_FLOOR` is set:
//!
//! - `identity`: the identity is peeked and hashed as always, and its home line in a table
//!   of the size the measured run grows to (2^21 slots, 16 MiB, per partition) is read
//!   ahead with the run's other lines, then read and written once. No probe, no buckets,
//!   no growth, no expiry, no checkpoint of identities; every event is admitted.
//! - `line`: the same line work with a key mixed from the record's position instead of
//!   its identity: the memory's share alone.
//! - `durable`: `identity`, and the identity kept in its event-time bucket as the set
//!   keeps it, so checkpoints write it to their parts (8 bytes each): the least an exact
//!   set that survives a restart does. Buckets are forgotten whole (past the horizon or
//!   `max_ids`), without touching the table.
//!
//! An exact set of millions of identities does not fit in this machine's caches, so each
//! new identity costs at least one such line (bench/RESULTS.md).

use std::sync::LazyLock;

/// What [`super::Seen::admit_identity`] does instead of de-duplicating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// Peek and hash the identity, then one line.
    Identity,
    /// One line at a key from the record's position.
    Line,
    /// [`Floor::Identity`], and the identity in its bucket and the checkpoint parts.
    Durable,
}

static MODE: LazyLock<Option<Floor>> =
    LazyLock::new(|| match std::env::var("HELIOS_BENCH_FLOOR").as_deref() {
        Ok("identity") => Some(Floor::Identity),
        Ok("line") => Some(Floor::Line),
        Ok("durable") => Some(Floor::Durable),
        _ => None,
    });

/// The floor measured in this process, if any.
pub fn mode() -> Option<Floor> {
    *MODE
}

/// Keys the floor's table is sized for: by default as many slots as the measured run's
/// table holds at its end (2^21 per partition); `HELIOS_BENCH_FLOOR_KEYS` sizes it for
/// another count, e.g. `400000` for 2^20 slots, the densest the set's layout allows for
/// the run's identities (three-quarters full), to see what the table's size costs.
static FLOOR_KEYS: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("HELIOS_BENCH_FLOOR_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500_000)
});

/// Slots for the floor's table: see [`FLOOR_KEYS`].
pub(super) fn table_capacity(count: usize) -> usize {
    if mode().is_some() {
        count.max(*FLOOR_KEYS)
    } else {
        count
    }
}

/// A well-mixed key (SplitMix64) for a record's position.
pub fn position_key(partition: u32, offset: u64) -> u64 {
    let mut h = offset
        .wrapping_add(u64::from(partition) << 40)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
