//! `tandem top`: a live terminal view of a running `tandem up`, read from
//! the agent's control socket (the same status `tandem status --json`
//! prints): instances with role, lag, rate and restarts; every source,
//! vertex and sink with its rates and latency; divergence; the upgrade
//! phase. `q` (or Esc, or Ctrl-C) quits.
//!
//! [`draw`] renders one status and touches no terminal, so it is tested
//! against ratatui's `TestBackend`; [`run`] is the loop around it.

use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

use crate::metrics::figures::NodeFigures;
use crate::stats::format_ns;

/// Shows the agent answering on `socket` every `every` until `q`.
pub fn run(socket: &Path, every: Duration) -> Result<(), String> {
    let mut terminal =
        ratatui::try_init().map_err(|e| format!("cannot take over the terminal: {e}"))?;
    let result = show(&mut terminal, socket, every);
    ratatui::restore();
    result
}

fn show(
    terminal: &mut ratatui::DefaultTerminal,
    socket: &Path,
    every: Duration,
) -> Result<(), String> {
    loop {
        let view = match crate::up::ask::ask_status(socket) {
            Ok(json) => serde_json::from_str(&json).map_err(|e| format!("unreadable status: {e}")),
            Err(crate::up::ask::AskError::Unanswered { source, .. }) => Err(format!(
                "no `tandem up` answers on {} ({source}); retrying",
                socket.display()
            )),
            // Refused (busy) or closed unanswered: said as it is.
            Err(e) => Err(format!("{e}; retrying")),
        };
        terminal
            .draw(|frame| draw(frame, &view, every))
            .map_err(|e| format!("cannot draw: {e}"))?;
        let next = Instant::now() + every;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left).map_err(|e| format!("cannot read keys: {e}"))? {
                break;
            }
            let Event::Key(key) = event::read().map_err(|e| format!("cannot read keys: {e}"))?
            else {
                continue;
            };
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if key.kind == KeyEventKind::Press
                && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
            {
                return Ok(());
            }
        }
    }
}

/// Draws one status (`Err`: why there is none) on `frame`.
pub fn draw(frame: &mut Frame, status: &Result<Value, String>, every: Duration) {
    let header = status.as_ref().map(header);
    let lines = header.as_ref().map_or(1, |(_, n)| *n);
    let [head, instances, nodes, foot] = Layout::vertical([
        Constraint::Length(lines + 2),
        Constraint::Length(5),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(format!(
            "q quits · every {every:?} · figures of the last 5 s"
        )),
        foot,
    );
    let (v, header) = match (status, header) {
        (Ok(v), Ok((header, _))) => (v, header),
        (Err(why), _) | (_, Err(why)) => {
            frame.render_widget(
                Paragraph::new(why.as_str()).block(Block::bordered().title(" tandem top ")),
                head,
            );
            return;
        }
    };
    frame.render_widget(header, head);
    frame.render_widget(instance_table(v), instances);
    frame.render_widget(node_table(v), nodes);
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The header and its number of lines.
fn header(v: &Value) -> (Paragraph<'static>, u16) {
    let upgrade = &v["upgrade"];
    let phase = upgrade["phase"].as_str().unwrap_or("?");
    let upgrade_line = if phase == "idle" {
        "upgrade: idle".to_owned()
    } else {
        format!(
            "upgrade: {phase} ({} -> {}) compared {} mismatched {}",
            text(&upgrade["from"]),
            text(&upgrade["to"]),
            text(&upgrade["compared"]),
            text(&upgrade["mismatched"])
        )
    };
    let build = &v["build"];
    let divergence = v["divergence"].as_u64().unwrap_or(0);
    let mut lines = vec![
        Line::from(format!(
            "graph {}   agent pid {}   head {}   emitted {}   compared {}   divergence {divergence}",
            text(&v["graph"]),
            text(&v["agent_pid"]),
            text(&v["head"]),
            text(&v["emitted"]),
            text(&v["compared"]),
        )),
        Line::from(format!(
            "{upgrade_line}   metrics {}   tandem {} ({})",
            v["metrics"].as_str().unwrap_or("off"),
            text(&build["version"]),
            build["commit"].as_str().unwrap_or("unknown commit"),
        )),
    ];
    let spools: Vec<String> = v["spools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {} bytes, oldest {:.0} s",
                text(&s["sink"]),
                text(&s["bytes"]),
                s["age_seconds"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    if !spools.is_empty() {
        lines.push(Line::from(format!("spools: {}", spools.join("; "))));
    }
    let count = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let style = if divergence > 0 {
        Style::default().add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    let paragraph = Paragraph::new(lines)
        .style(style)
        .block(Block::bordered().title(" tandem top "));
    (paragraph, count)
}

fn instance_table(v: &Value) -> Table<'static> {
    let rows = v["instances"].as_array().into_iter().flatten().map(|i| {
        Row::new([
            text(&i["color"]),
            text(&i["role"]),
            text(&i["pid"]),
            text(&i["version"]),
            text(&i["lag"]),
            text(&i["records_per_sec"]),
            text(&i["restarts"]),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new([
            "instance", "role", "pid", "version", "lag", "out/s", "restarts",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" instances "))
}

fn node_table(v: &Value) -> Table<'static> {
    let rows = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(NodeFigures::parse)
        .map(|n| {
            let s = &n.sample;
            let at = n.color.map_or("agent", |c| c.name());
            let latency = |i: usize| {
                n.recent
                    .latency
                    .map_or("-".to_owned(), |q| format_ns((q[i] * 1e9).round() as u64))
            };
            Row::new([
                s.id.clone(),
                crate::metrics::figures::role_name(s.role).to_owned(),
                at.to_owned(),
                format!("{:.1}", n.recent.in_per_sec),
                format!("{:.1}", n.recent.out_per_sec),
                s.records_in.to_string(),
                s.records_out.to_string(),
                s.drops.to_string(),
                s.high_water.to_string(),
                latency(0),
                latency(1),
                latency(2),
            ])
        });
    Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "node", "role", "where", "in/s", "out/s", "in", "out", "drops", "hwm", "p50", "p99",
            "p999",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" sources, vertices, sinks "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    fn screen(status: &Result<Value, String>) -> String {
        let mut terminal = Terminal::new(TestBackend::new(130, 24)).unwrap();
        terminal
            .draw(|f| draw(f, status, Duration::from_secs(1)))
            .unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn shows_instances_nodes_divergence_and_the_upgrade_phase() {
        let status = json!({
            "graph": "home", "agent_pid": 42, "head": 1000, "emitted": 990,
            "compared": 980, "divergence": 0,
            "instances": [
                {"color": "blue", "role": "serving", "pid": 43, "version": "53c89e4f",
                 "lag": 2, "records_per_sec": 400.0, "restarts": 0},
                {"color": "green", "role": "starting", "pid": null, "version": null,
                 "lag": null, "records_per_sec": 0.0, "restarts": 1},
            ],
            "upgrade": {"phase": "idle", "last": null},
            "metrics": "127.0.0.1:9464",
            "spools": [{"sink": "cloud", "bytes": 2048, "age_seconds": 31.2}],
            "build": {"version": "0.1.0", "commit": "abc1234"},
            "nodes": [{
                "id": "energy", "role": "vertex", "color": "blue", "records_in": 500,
                "records_out": 500, "errors": 0, "drops": 0, "high_water": 12,
                "in_per_sec": 400.0, "out_per_sec": 400.0, "calls": 50,
                "busy_seconds": 0.001,
                "latency_seconds": {"p50": 1.5e-6, "p99": 2e-5, "p999": 3e-4},
            }],
        });
        let screen = screen(&Ok(status));
        for expected in [
            "divergence 0",
            "upgrade: idle",
            "metrics 127.0.0.1:9464",
            "abc1234",
            "blue",
            "serving",
            "green",
            "starting",
            "energy",
            "400.0",
            "1.5us",
            "300.0us",
            "q quits",
            "spools: cloud 2048 bytes, oldest 31 s",
        ] {
            assert!(screen.contains(expected), "no `{expected}` on\n{screen}");
        }
    }

    #[test]
    fn says_when_no_agent_answers() {
        let screen = screen(&Err("no `tandem up` answers on x/agent.sock".into()));
        assert!(screen.contains("no `tandem up` answers"), "{screen}");
    }
}
