//! `helios-connectors` owns Helios' sources: everything that turns outside signals into
//! `Event` records on `helios.events`. So far: the HTTP/CloudEvents ingest route.

pub mod http_ingest;
