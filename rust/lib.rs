//! licensor's native core, `licensor._core`: strict Ed25519 (single and batch), the signed-token codec and
//! fingerprint matching. Each concern is pure Rust in its own file and tested with `cargo test`; the PyO3
//! layer in `bindings.rs` is compiled only with the `python` feature that maturin turns on.

pub mod ed25519;
pub mod fingerprint;
pub mod token;

#[cfg(feature = "python")]
mod bindings;
