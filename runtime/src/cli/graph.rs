//! The commands about graph files: `check`, `diff` and `kinds`, and how
//! a graph file is loaded for them and for `run` and `up`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tandem_core::graph::Loaded;
use tandem_core::param::format_duration;
use tandem_core::{Layout, ParamDefault, Role};

use super::{Printed, INVALID, UNREADABLE};

/// Reads and validates one graph file. Errors are printed; the code says which kind.
pub fn load(path: &Path, layout: Option<Layout>) -> Result<Loaded, u8> {
    let shown = path.display().to_string();
    let mut loaded = tandem::graph_file::load(path).map_err(|e| {
        eprintln!("{e}");
        match e {
            tandem::graph_file::GraphFileError::Unreadable { .. } => UNREADABLE,
            tandem::graph_file::GraphFileError::Invalid(_) => INVALID,
        }
    })?;
    if let Some(layout) = layout {
        loaded.plan = loaded.plan.relayout(layout).map_err(|e| {
            eprintln!("{shown}: error: {e}");
            INVALID
        })?;
    }
    Ok(loaded)
}

/// `tandem check FILE...`: exit 0 valid, 1 invalid, 2 unreadable (the worst of them).
pub fn check(files: &[PathBuf], layout: Option<Layout>) -> Printed {
    let mut worst = 0u8;
    for file in files {
        match load(file, layout) {
            Ok(loaded) => {
                outln!("{}: ok", file.display())?;
                out!("{}", loaded.plan)?;
            }
            Err(code) => worst = worst.max(code),
        }
    }
    Ok(ExitCode::from(worst))
}

/// Exit code of an upgrade `tandem diff` refuses.
const REFUSED: u8 = 1;

/// `tandem diff OLD NEW`: exit 0 safe, 1 refused, 2 unreadable or invalid.
pub fn diff(old: &Path, new: &Path, allow_drop: bool) -> Printed {
    // Both files are read and checked, so that every error is shown at once.
    let (old_graph, new_graph) = (load(old, None), load(new, None));
    let (Ok(old_graph), Ok(new_graph)) = (old_graph, new_graph) else {
        return Ok(ExitCode::from(UNREADABLE));
    };
    let changes = tandem_core::diff::diff(&old_graph.plan, &new_graph.plan);
    out!("{changes}")?;
    let mut refusals: Vec<String> = changes
        .refusals(allow_drop)
        .iter()
        .map(ToString::to_string)
        .collect();
    let stateful = old_graph
        .plan
        .nodes
        .iter()
        .any(|n| n.kind.state_schema.is_some());
    if old_graph.name != new_graph.name && stateful {
        refusals.push(format!(
            "the graph is renamed from `{}` to `{}`: checkpoints of `{}` would not be resumed; \
             keep `name = \"{}\"` under [graph]",
            old_graph.name, new_graph.name, old_graph.name, old_graph.name
        ));
    }
    if !refusals.is_empty() {
        for reason in &refusals {
            eprintln!("error: {reason}");
        }
        eprintln!(
            "tandem: upgrade refused: {} change(s) would lose state",
            refusals.len()
        );
        return Ok(ExitCode::from(REFUSED));
    }
    let dropped: Vec<&str> = changes
        .nodes
        .iter()
        .filter(|n| matches!(n.state, tandem_core::diff::StateFate::Dropped(_)))
        .map(|n| n.id.as_str())
        .collect();
    if changes.is_empty() && old_graph.name == new_graph.name {
        outln!("no change")?;
    } else if dropped.is_empty() {
        outln!("safe: the state of every vertex carries over")?;
    } else {
        outln!(
            "safe with --allow-drop: the state of every vertex carries over but {}",
            dropped.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `tandem kinds [NAME]`.
pub fn kinds(only: Option<&str>) -> Printed {
    let registry = tandem_nodes::registry();
    let mut found = false;
    for role in [Role::Source, Role::Vertex, Role::Sink] {
        for kind in registry.kinds().filter(|k| k.role() == role) {
            if only.is_some_and(|n| n != kind.name) {
                continue;
            }
            found = true;
            outln!(
                "[{}] {} v{}: {}",
                role.table(),
                kind.name,
                kind.version,
                kind.doc
            )?;
            if !kind.input_names.is_empty() {
                outln!("    inputs: {}", kind.input_names.join(", "))?;
            }
            let outs: Vec<String> = kind
                .outputs
                .iter()
                .map(|o| {
                    let name = if o.suffix.is_empty() {
                        "<id>".to_owned()
                    } else {
                        format!("<id>.{}", o.suffix)
                    };
                    if o.unit.is_empty() {
                        name
                    } else {
                        format!("{name} [{}]", o.unit)
                    }
                })
                .chain(kind.outputs_from.map(|p| format!("<id>.<each of `{p}`>")))
                .collect();
            if !outs.is_empty() {
                outln!("    outputs: {}", outs.join(", "))?;
            }
            if let Some(schema) = kind.state_schema {
                outln!("    state schema: {schema}")?;
            }
            for p in kind.params {
                let default = match p.default {
                    ParamDefault::Required => "required".to_owned(),
                    ParamDefault::Optional => "optional".to_owned(),
                    ParamDefault::Float(v) => format!("default {v}"),
                    ParamDefault::Int(v) => format!("default {v}"),
                    ParamDefault::Bool(v) => format!("default {v}"),
                    ParamDefault::Duration(v) => format!("default \"{}\"", format_duration(v)),
                    ParamDefault::Text(v) => format!("default \"{v}\""),
                    ParamDefault::Names(v) => format!("default {v:?}"),
                };
                outln!(
                    "    {} = {} ({default}): {}",
                    p.name,
                    p.ty.expected(),
                    p.doc
                )?;
            }
        }
    }
    if !found {
        if let Some(name) = only {
            eprintln!("error: no kind `{name}`; `tandem kinds` lists them all");
            return Ok(ExitCode::from(INVALID));
        }
    }
    Ok(ExitCode::SUCCESS)
}
