//! Examples live beside this file: `cargo run -p otm-examples --example standalone`.
//!
//! This crate also compiles the Rust code of the README and the docs as
//! doctests (it is not published, and depends on every crate they use), so
//! a snippet that stops compiling fails the tests.

/// The README's Rust blocks.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The Rust blocks of docs/STORES.md.
#[cfg(doctest)]
#[doc = include_str!("../../docs/STORES.md")]
struct StoresDoctests;
