//! # gaterouter-types
//!
//! The foundation layer of GateRouter: plain data every other crate speaks, and nothing
//! that decides or does I/O. Users depend on `gaterouter`, which re-exports each module
//! under its old path (`gaterouter::types`, `gaterouter::error`, ...).
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | [`types`] | the OpenAI-shaped request, response and stream chunk every caller sees |
//! | [`stream`] | the normalized chunk stream and its accumulator |
//! | [`error`] | the rich internal [`Error`], the small stable public [`ErrorKind`] and [`ErrorInfo`] |
//! | [`money`] | micro-dollar amounts ([`money::Micros`]) and what a call cost ([`money::Cost`]) |
//! | [`model_id`] | `provider/model` names and `auto` |
//! | [`decision`] | the data of a routing decision ([`decision::RouteDecision`], tiers, exclusions, attempts) |
//! | [`budget`] | organization levels, a rule's denial and a budget's status, as errors carry them |
//! | [`sse`] | an incremental Server-Sent-Events parser shared by every adapter |
//! | [`http_reply`] | reading an HTTP reply: `retry-after`, a bounded body excerpt |
//! | [`secret`] | a string that never prints (API keys) |
//! | [`identity`] | who is calling (org, department, project, group, member, key id) |
//! | [`backoff`] | the one jittered exponential backoff (provider retries, usage uploads) |
//!
//! Why `decision` and `budget` live here: every response carries its route decision, and
//! permission/budget errors carry the level and budget that refused the call. Keeping the
//! data down here lets `types` and `error` name them without depending on the router or
//! on the accounts rules (the back-edges `types -> routing` and `error -> accounts`).

pub mod backoff;
pub mod budget;
pub mod decision;
pub mod error;
pub mod http_reply;
pub mod identity;
pub mod model_id;
pub mod money;
pub mod secret;
pub mod sse;
pub mod stream;
pub mod types;

pub use error::{Error, ErrorInfo, ErrorKind, Result};
pub use model_id::ModelId;
pub use stream::{ChatStream, StreamAccumulator};
pub use types::*;
