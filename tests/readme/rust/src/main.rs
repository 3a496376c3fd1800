//! One Rust program of the READMEs, chosen at build time by README_BLOCK (see build.rs and
//! tests/readme/check.py). Without README_BLOCK it is an empty program.
include!(concat!(env!("OUT_DIR"), "/block.rs"));
