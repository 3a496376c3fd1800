//! One module per subcommand.

pub mod admin;
pub mod chat;
pub mod collector;
pub mod demo;
pub mod feedback;
pub mod models;
pub mod route;
pub mod tokens;
pub mod usage;
