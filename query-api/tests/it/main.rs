//! Integration tests of the HTTP API, as one test binary: one link per crate instead of one per
//! file keeps the test build within a 2-core machine (issue 16). Each file is a module.

mod common;

mod auth;
mod chdb;
mod guard_props;
mod insights;
mod registry_converter;
mod sql;
