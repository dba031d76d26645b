//! Integration tests of the log backends, as one test binary: one link per crate instead of one per
//! file keeps the test build within a 2-core machine (issue 16). Each file is a module.

#[macro_use]
mod conformance;

mod embedded;
mod embedded_storage;
mod kafka;
