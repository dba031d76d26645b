//! One module per subcommand.

pub mod backtest;
pub mod ingest;
pub mod keys;
pub mod migrate;
pub mod pipeline;
pub mod run;
pub mod send;
pub mod serve;
pub mod tail;
pub mod topics;
pub mod up;
pub mod validate;
