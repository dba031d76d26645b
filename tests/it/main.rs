//! Integration tests of the `helios` binary end to end, as one test binary: one link per crate instead of one per
//! file keeps the test build within a 2-core machine (issue 16). Each file is a module.
mod api_keys;
mod architecture;
mod clickhouse_outage;
mod common;
mod crash_recovery;
mod default_sources;
mod deploy_files;
mod disk;
mod event_time;
mod hostile_sql;
mod http_abuse;
mod insights_api;
mod metrics;
mod otel;
mod pipeline_crash;
mod quiet_stream;
mod readme;
mod rules_alerts;
mod runbooks;
mod scale_out;
mod sinks_embedded;
mod stage_failure;
mod standard_clients;
mod up_and_tail;
mod validate;
