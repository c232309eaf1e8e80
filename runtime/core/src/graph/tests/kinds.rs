//! What a kind refuses of its parameters taken together is reported when
//! the file is loaded: a vertex is built, a source or sink runs its check
//! and is never built.

use super::*;
use crate::vertex::Check;

/// Refuses a gain above 5 when `on`, blaming `gain`; a count of 7 blames nothing.
fn picky(ctx: &BuildContext<'_>) -> Result<Box<dyn crate::vertex::Vertex>, BuildError> {
    let gain = ctx.params.float("gain").unwrap_or(0.0);
    if ctx.params.bool("on") == Some(true) && gain > 5.0 {
        return Err(BuildError::new(format!(
            "vertex `{}`: gain {gain} is too high when on; at most 5",
            ctx.id
        ))
        .at("gain"));
    }
    if ctx.params.int("count") == Some(7) {
        return Err(BuildError::new(format!("vertex `{}`: not 7", ctx.id)));
    }
    crate::vertex::idle(ctx)
}

static PICKY: KindSpec = KindSpec {
    name: "picky",
    build: Builder::Vertex(picky),
    ..KNOBS
};

fn never_built(_: &BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
    panic!("a graph file's loader built a source");
}

static OPENS: KindSpec = KindSpec {
    name: "opens",
    build: Builder::Source(never_built),
    ..SOURCE
};

/// Refuses a period under 1 s.
fn slow_only(ctx: &BuildContext<'_>) -> Result<(), BuildError> {
    match ctx.params.duration_ns("period") {
        Some(ns) if ns < 1_000_000_000 => {
            Err(BuildError::new(format!("`{}`: period must be 1s or more", ctx.id)).at("period"))
        }
        _ => Ok(()),
    }
}

fn errors_with_kinds(src: &str) -> Vec<String> {
    let mut r = registry();
    r.register(&[&PICKY, &OPENS]);
    let checks: &[(&'static KindSpec, Check)] = &[(&OPENS, slow_only)];
    r.register_checks(checks);
    match load("g.toml", src.as_bytes(), &r) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const PICKY_GRAPH: &str = r#"[sources.m]
kind = "opens"
period = "500ms"

[vertices.p]
kind = "picky"
inputs = ["m.current"]
on = true
gain = 9
"#;

#[test]
fn a_refusal_is_reported_at_the_parameter_it_blames() {
    assert_eq!(
        errors_with_kinds(PICKY_GRAPH),
        [
            "g.toml:3:10: error: `m`: period must be 1s or more",
            "g.toml:9:8: error: vertex `p`: gain 9 is too high when on; at most 5",
        ]
    );
}

#[test]
fn a_refusal_blaming_no_parameter_is_reported_at_the_node() {
    let src = PICKY_GRAPH
        .replace("period = \"500ms\"\n", "")
        .replace("gain = 9", "gain = 1\ncount = 7");
    assert_eq!(
        errors_with_kinds(&src),
        ["g.toml:4:11: error: vertex `p`: not 7"]
    );
}

#[test]
fn a_node_with_other_errors_is_not_checked_again() {
    let src = PICKY_GRAPH.replace("gain = 9", "gain = 11");
    assert_eq!(
        errors_with_kinds(&src),
        [
            "g.toml:3:10: error: `m`: period must be 1s or more",
            "g.toml:9:8: error: parameter `gain` of `picky` must be a number from -10 to 10, got 11",
        ]
    );
}
