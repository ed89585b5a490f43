//! otm-http's modules in their layers, top first: the façade, the routers
//! and the server loop, what every request passes through and the
//! handlers, the API's error answers, the service, its configuration, the
//! policy and event delivery, the limiters, counters and string tables, and the caller at
//! the bottom. An import from a lower layer up to a higher one fails here.

const LAYERS: &[&[&str]] = &[
    &["router", "serve"],
    &["middleware", "handlers"],
    &["error"],
    &["service"],
    &["config"],
    &["policy", "events", "webhook"],
    &["limit", "metrics", "i18n"],
    &["caller"],
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
