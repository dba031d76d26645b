//! Helios HTTP API. Being written.
