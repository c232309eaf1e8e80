//! Each node's parameters checked together by its kind's own code, when the
//! file is loaded: a vertex is built (vertex builders are pure) and a source
//! or sink runs the [`Check`](crate::vertex::Check) its kind declares (their
//! builders may open files and devices). So `tandem check` refuses what
//! `tandem run` would, with the same message, at a line and column.

use super::diag::Report;
use super::spec::NodeSpec;
use crate::channel::ChannelTable;
use crate::param::Params;
use crate::record::ChannelId;
use crate::vertex::{BuildContext, Builder, KindSpec, Registry};
use std::sync::Arc;

/// A node whose kind, parameters, inputs and outputs are all valid.
pub(crate) struct Sound<'n, 'a, 'i> {
    pub spec: &'n NodeSpec<'a, 'i>,
    pub kind: &'static KindSpec,
    pub params: &'n Params,
    /// Input channel names, in file order.
    pub inputs: Vec<&'n str>,
    /// Output channel names and units, in the order of the kind's outputs.
    pub outputs: &'n [(String, &'static str)],
}

/// Reports what each node's kind refuses, at the parameter it blames (at
/// the node when the file leaves that parameter to its default).
pub(crate) fn check(nodes: &[Sound<'_, '_, '_>], registry: &Registry, report: &mut Report) {
    let mut table = ChannelTable::new();
    for node in nodes {
        for (name, unit) in node.outputs {
            table.intern(name, unit);
        }
    }
    let channels = Arc::new(table);
    let ids = |names: &mut dyn Iterator<Item = &str>| -> Option<Vec<ChannelId>> {
        names.map(|name| channels.get(name)).collect()
    };
    for node in nodes {
        // An input from a node that is not sound has no channel here; its
        // producer's own error is reported already.
        let (Some(inputs), Some(outputs)) = (
            ids(&mut node.inputs.iter().copied()),
            ids(&mut node.outputs.iter().map(|(name, _)| name.as_str())),
        ) else {
            continue;
        };
        let ctx = BuildContext {
            id: &node.spec.id.value,
            params: node.params,
            inputs: &inputs,
            outputs: &outputs,
            channels: &channels,
        };
        let built = match node.kind.build {
            Builder::Vertex(build) => build(&ctx).map(drop),
            Builder::Source(_) | Builder::Sink(_) => Ok(()),
        };
        let checked = built.and_then(|()| registry.check(node.kind).map_or(Ok(()), |c| c(&ctx)));
        if let Err(e) = checked {
            let at = e
                .param
                .and_then(|p| node.spec.params.iter().find(|(key, _)| key.value == p))
                .map_or(node.spec.id.span.clone(), |(_, value)| value.span());
            report.at(&at, e.message);
        }
    }
}
