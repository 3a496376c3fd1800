//! SQL over [`crate::db`], one module per kind of stored thing. Nothing here knows
//! the HTTP handlers; the handlers and the ingest path call down into it.

pub mod accounts;
pub mod audit;
pub mod bills;
pub mod budgets;
pub mod export;
pub mod feedback;
pub mod keys;
pub mod learning;
pub mod orgtree;
pub mod policy;
pub mod reports;
pub mod sessions;
pub mod tokens;
pub mod units;
pub mod usage;
