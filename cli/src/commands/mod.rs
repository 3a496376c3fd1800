//! One module per subcommand.

pub mod chat;
pub mod demo;
pub mod models;
