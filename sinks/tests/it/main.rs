//! Integration tests of the sinks and stores, as one test binary: one link per crate instead of one per
//! file keeps the test build within a 2-core machine (issue 16). Each file is a module.

mod common;

mod clickhouse;
mod grafana;
mod grafana_macros;
mod notify;
mod parquet;
