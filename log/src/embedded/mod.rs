//! The embedded segment log. Being written.
