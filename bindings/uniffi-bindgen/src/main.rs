//! `cargo run -p uniffi-bindgen -- generate <cdylib> -l kotlin|swift -o <dir> --no-format`
//!
//! Kept in the workspace so the generator is always the exact uniffi version the
//! `gaterouter-ffi` scaffolding was built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
