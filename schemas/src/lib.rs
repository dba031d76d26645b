//! Helios records. Being written.
