//! One module per subcommand.

pub mod admin;
pub mod chat;
pub mod demo;
pub mod models;
pub mod route;
pub mod tokens;
pub mod usage;
pub mod collector;
