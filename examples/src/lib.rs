//! Examples live beside this file: `cargo run -p otm-examples --example standalone`.
