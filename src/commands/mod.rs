//! One module per subcommand.

pub mod send;
pub mod tail;
pub mod topics;
pub mod up;
