//! otm-store's modules in their layers, top first: `connect`, the one place
//! that names every backend; the backends (each in its own module, holding
//! its outbox and its URL parsing) and the conformance suite that runs
//! against any of them; what the SQL backends share; what every backend's
//! URL and connection share, and the breaker a service puts in front of a
//! store; and the contract at the bottom (the trait, its types, errors,
//! options, capabilities and events), which names no backend. An import
//! from a lower layer up to a higher one fails here.

const LAYERS: &[&[&str]] = &[
    &["connect"],
    &[
        "conformance",
        "memory",
        "sqlite",
        "postgres",
        "redis_store",
        "s3",
    ],
    &["sql"],
    &["url", "breaker"],
    &["contract"],
];

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let upward = otm_testkit::layers::upward_imports(&src, LAYERS).unwrap();
    let lines: Vec<String> = upward.iter().map(ToString::to_string).collect();
    assert!(
        upward.is_empty(),
        "imports up a layer:\n{}",
        lines.join("\n")
    );
}
