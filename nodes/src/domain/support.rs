//! What the domain vertices share: reading validated parameters and channels
//! into build errors that name the culprit, and the one timed sample they all hold.

use tandem_core::{BuildContext, BuildError, ChannelId, Quality, Record};

/// A good measurement held between records: event time (ns) and value.
#[derive(Clone, Copy, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Sample {
    /// Event time, nanoseconds since the Unix epoch.
    pub time: i64,
    /// The value, in the input's unit.
    pub value: f64,
}

impl Sample {
    /// The record's time and value.
    pub fn of(record: &Record) -> Sample {
        Sample {
            time: record.time.0,
            value: record.value,
        }
    }
}

/// True when a record can be used as a measurement: no quality flag and a finite value.
pub(crate) fn usable(record: &Record) -> bool {
    record.quality.is_good() && record.value.is_finite()
}

/// `UNCERTAIN` when `doubtful`, else good.
pub(crate) fn uncertain_if(doubtful: bool) -> Quality {
    if doubtful {
        Quality::UNCERTAIN
    } else {
        Quality::GOOD
    }
}

/// The input channels of a node, in file order, checked to be `N` distinct channels.
pub(crate) fn inputs<const N: usize>(
    ctx: &BuildContext<'_>,
    names: &[&str; N],
) -> Result<[ChannelId; N], BuildError> {
    if ctx.inputs.len() != N {
        return Err(BuildError::new(format!(
            "vertex `{}` takes {N} inputs ({}), got {}",
            ctx.id,
            names.join(", "),
            ctx.inputs.len()
        )));
    }
    let mut ids = [ChannelId(0); N];
    for (index, (slot, id)) in ids.iter_mut().zip(ctx.inputs).enumerate() {
        if let Some(first) = ctx.inputs.iter().position(|other| other == id) {
            if first != index {
                return Err(BuildError::new(format!(
                    "vertex `{}` has channel `{}` as inputs `{}` and `{}`; each input must be its own channel",
                    ctx.id,
                    ctx.channels.name(*id),
                    names.get(first).copied().unwrap_or("?"),
                    names.get(index).copied().unwrap_or("?"),
                )));
            }
        }
        *slot = *id;
    }
    Ok(ids)
}

/// Output channel `index` (in the order of the kind's outputs).
pub(crate) fn output(ctx: &BuildContext<'_>, index: usize) -> Result<ChannelId, BuildError> {
    ctx.outputs.get(index).copied().ok_or_else(|| {
        BuildError::new(format!(
            "vertex `{}` was given {} output channels, needs at least {}",
            ctx.id,
            ctx.outputs.len(),
            index + 1
        ))
    })
}

fn missing(ctx: &BuildContext<'_>, name: &str, what: &str) -> BuildError {
    BuildError::new(format!(
        "vertex `{}` has no {what} parameter `{name}`",
        ctx.id
    ))
}

/// A float parameter, finite.
pub(crate) fn float(ctx: &BuildContext<'_>, name: &str) -> Result<f64, BuildError> {
    match ctx.params.float(name) {
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(BuildError::new(format!(
            "vertex `{}`: parameter `{name}` is {v}, expected a finite number",
            ctx.id
        ))),
        None => Err(missing(ctx, name, "number")),
    }
}

/// An integer parameter.
pub(crate) fn int(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params
        .int(name)
        .ok_or_else(|| missing(ctx, name, "integer"))
}

/// A duration parameter in nanoseconds.
pub(crate) fn duration_ns(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params
        .duration_ns(name)
        .ok_or_else(|| missing(ctx, name, "duration"))
}

/// A text or choice parameter.
pub(crate) fn text<'a>(ctx: &'a BuildContext<'_>, name: &str) -> Result<&'a str, BuildError> {
    ctx.params
        .text(name)
        .ok_or_else(|| missing(ctx, name, "text"))
}
