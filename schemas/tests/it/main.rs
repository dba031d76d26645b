//! Integration tests of helios-schemas, as one test binary (one link per crate, issue 16).
//! Each file is a module. The binary counts allocations (`alloc`), so the property tests
//! can check that no decoder sizes an allocation from an untrusted length prefix.

mod alloc;
mod props;

mod cloudevents_props;
mod codec_props;
mod registry_props;
