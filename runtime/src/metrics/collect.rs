//! The agent's collector: once a second, off the hub's loop, it samples
//! the agent's own sources and sinks, asks each instance for its vertices
//! ([`super::feed`]), and puts the figures, with their recent rates and
//! latency, on the [`Board`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_core::ha::Color;
use tandem_core::split::{FROM_INSTANCES, TO_INSTANCES};
use tandem_core::Role;

use super::feed;
use super::figures::NodeFigures;
use super::live::{self, NodeSample};
use super::window::Window;
use super::Board;

/// How often figures are gathered.
pub const EVERY: Duration = Duration::from_secs(1);

/// Gathers figures for `board` until the runtime ends. `state` is the
/// state directory, where the instances answer.
pub async fn run(board: Arc<Board>, state: PathBuf) {
    let origin = Instant::now();
    let mut windows: HashMap<(Option<Color>, String), Window> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut sampled: Vec<(Option<Color>, NodeSample)> = Vec::new();
        let mut relayed = None;
        for node in live::nodes() {
            let sample = node.sample();
            if sample.id == FROM_INSTANCES {
                relayed = Some(sample.records_out);
            }
            if sample.role != Role::Vertex
                && sample.id != FROM_INSTANCES
                && sample.id != TO_INSTANCES
            {
                sampled.push((None, sample));
            }
        }
        for color in Color::BOTH {
            if let Some(samples) = feed::ask(&feed::socket_path(&state, color)).await {
                sampled.extend(samples.into_iter().map(|s| (Some(color), s)));
            }
        }
        let at = origin.elapsed();
        let mut kept = HashMap::with_capacity(sampled.len());
        let mut figures = Vec::with_capacity(sampled.len());
        for (color, sample) in sampled {
            let key = (color, sample.id.clone());
            let mut window = windows.remove(&key).unwrap_or_default();
            window.push(at, &sample);
            figures.push(NodeFigures {
                color,
                recent: window.recent(),
                sample,
            });
            kept.insert(key, window);
        }
        windows = kept;
        // Sources, then vertices (blue's, then green's), then sinks; each in
        // plan order.
        figures.sort_by_key(|f| {
            let role = match f.sample.role {
                Role::Source => 0,
                Role::Vertex => 1,
                Role::Sink => 2,
            };
            (role, f.color.map(Color::index))
        });
        board.set_figures(figures, relayed);
    }
}
