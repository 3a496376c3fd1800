//! Shared pieces of the reliability suites (see `tests/reliability/README.md`).
//!
//! Each suite is an integration test under `tests/reliability/tests/`. By default they
//! run a short version (part of the README's test command); `GATEROUTER_RELIABILITY=full`
//! (set by `tests/reliability/run.sh --full`) runs the full counts that
//! `bench/RESULTS.md` reports.

/// True when the full suite was asked for.
pub fn full() -> bool {
    std::env::var("GATEROUTER_RELIABILITY").is_ok_and(|v| v == "full")
}

/// `short` in the default run, `full` with `GATEROUTER_RELIABILITY=full`.
pub fn scale(short: usize, full_count: usize) -> usize {
    if full() { full_count } else { short }
}

pub mod app;
pub mod load;
pub mod procs;
