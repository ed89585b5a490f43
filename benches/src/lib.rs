//! Benchmarks for otm live in `benches/`; run them with `cargo bench -p otm-benches`.
