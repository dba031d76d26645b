//! The Kafka backend (rdkafka). Being written.
