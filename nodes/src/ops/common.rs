//! Helpers shared by the operators: parameter access that never panics, and
//! the tight per-record loop of the stateless maps.

use tandem_core::{BuildContext, BuildError, ChannelId, Quality, Record};

/// Longest duration any operator parameter takes: 366 days (`"8784h"`).
/// Far beyond any sensible window or timeout, and short enough that event
/// times plus it never come near overflow.
pub(crate) const MAX_DURATION_NS: i64 = 366 * 24 * 3600 * 1_000_000_000;

/// The missing-parameter error. Validation fills every declared parameter,
/// so this only fires when a kind is built by hand with incomplete params.
fn missing(ctx: &BuildContext<'_>, name: &str) -> BuildError {
    BuildError::new(format!(
        "vertex `{}` has no parameter `{name}`; set it in the graph file",
        ctx.id
    ))
}

/// A float parameter.
pub(crate) fn float(ctx: &BuildContext<'_>, name: &str) -> Result<f64, BuildError> {
    ctx.params.float(name).ok_or_else(|| missing(ctx, name))
}

/// An integer parameter.
pub(crate) fn int(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params.int(name).ok_or_else(|| missing(ctx, name))
}

/// A boolean parameter.
pub(crate) fn boolean(ctx: &BuildContext<'_>, name: &str) -> Result<bool, BuildError> {
    ctx.params.bool(name).ok_or_else(|| missing(ctx, name))
}

/// A duration parameter, nanoseconds.
pub(crate) fn duration(ctx: &BuildContext<'_>, name: &str) -> Result<i64, BuildError> {
    ctx.params
        .duration_ns(name)
        .ok_or_else(|| missing(ctx, name))
}

/// A choice or text parameter.
pub(crate) fn text<'a>(ctx: &BuildContext<'a>, name: &str) -> Result<&'a str, BuildError> {
    ctx.params.text(name).ok_or_else(|| missing(ctx, name))
}

/// The error for a choice value the kind does not know.
pub(crate) fn bad_choice(
    ctx: &BuildContext<'_>,
    name: &str,
    got: &str,
    options: &[&str],
) -> BuildError {
    let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
    BuildError::new(format!(
        "vertex `{}`: `{name} = \"{got}\"` is not known; expected one of {}",
        ctx.id,
        quoted.join(", ")
    ))
}

/// Input channel `i` (file order).
pub(crate) fn input(ctx: &BuildContext<'_>, i: usize) -> Result<ChannelId, BuildError> {
    ctx.inputs.get(i).copied().ok_or_else(|| {
        BuildError::new(format!(
            "vertex `{}` needs at least {} input(s), got {}",
            ctx.id,
            i + 1,
            ctx.inputs.len()
        ))
    })
}

/// The kind's main (first) output channel.
pub(crate) fn output(ctx: &BuildContext<'_>) -> Result<ChannelId, BuildError> {
    ctx.outputs.first().copied().ok_or_else(|| {
        BuildError::new(format!(
            "vertex `{}` was built without its output channel",
            ctx.id
        ))
    })
}

/// `quality`, plus `OUT_OF_RANGE` when `value` is NaN or infinite. No branch.
#[inline]
pub(crate) fn flag_non_finite(quality: Quality, value: f64) -> Quality {
    Quality(quality.0 | (u32::from(!value.is_finite()) * Quality::OUT_OF_RANGE.0))
}

/// Maps every record of channel `from` to channel `to` through `f`, keeping
/// seq, time and quality; a non-finite result is flagged `OUT_OF_RANGE`.
/// Records of other channels are ignored. Generic over `f` so that each map
/// compiles to its own tight loop.
#[inline]
pub(crate) fn map_values(
    input: &[Record],
    out: &mut Vec<Record>,
    from: ChannelId,
    to: ChannelId,
    f: impl Fn(f64) -> f64,
) {
    out.reserve(input.len());
    for r in input {
        if r.channel == from {
            let value = f(r.value);
            out.push(Record {
                seq: r.seq,
                time: r.time,
                channel: to,
                quality: flag_non_finite(r.quality, value),
                value,
            });
        }
    }
}
