//! The runtime every source runs in: status tracking, the emitter that writes events and
//! dead letters to the log, and the supervisor that restarts pull sources with backoff and
//! pauses or resumes any source.
//!
//! Push sources (HTTP routes) register a [`SourceHandle`] and report through it; pull
//! sources implement [`PullSource`] and are run by the [`Supervisor`].

pub(crate) mod checkpoint;
mod disk;
mod emitter;
mod routes;
mod status;
mod supervisor;

pub use disk::{DiskGuard, DiskLow, DiskSpace, human_bytes};
pub use emitter::{Emitter, EmitterConfig, Refused, now_micros};
pub use routes::{Sources, openapi, router};
pub use status::{RequestOutcome, RequestStats, SourceHandle, SourceState, SourceStatus};
pub use supervisor::{DuplicateCounts, PullSource, SourceContext, Supervisor};
