//! Tells the validation-corpus test whether it can run.
//!
//! `tests/validation_corpus.rs` needs the corpus folder named by
//! `ENIGMA_VALIDATION_DIR`. When the variable is set at build time this
//! script sets `--cfg enigma_validation` and the test runs like any other;
//! when it is unset the test compiles as `#[ignore]`d, so `cargo test`
//! reports it as ignored instead of passing it silently. Cargo rebuilds when
//! the variable changes.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(enigma_validation)");
    println!("cargo::rerun-if-env-changed=ENIGMA_VALIDATION_DIR");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("ENIGMA_VALIDATION_DIR").is_some() {
        println!("cargo::rustc-cfg=enigma_validation");
    }
}
