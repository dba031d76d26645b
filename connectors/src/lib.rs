//! Helios sources. Being written.
