//! When the agent starts a colour's instance again, as a pure policy (time
//! is a parameter; the agent's process table asks it).
//!
//! An instance that served or shadowed since it was started is started
//! again at once when it dies: it worked, and the gateway is not redundant
//! until it is back. One that dies before that backs off: at once the first
//! time, then 400 ms, 800 ms, 1.6 s, 3.2 s, 5 s, 5 s, ..., so that an
//! instance that cannot start (a graph it refuses, a file it cannot read, a
//! crash on start) does not spin a core. A stop the agent asked for (a
//! restart on another release) is no failure and starts at once.

use super::msg::{Color, Nanos};

/// The longest pause before a start.
pub const MAX_BACKOFF: Nanos = Nanos::from_millis(5_000);

/// One colour's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    /// It has served or shadowed since it was started.
    live: bool,
    /// Starts in a row that died before they were live.
    failures: u32,
    /// Starts after the first.
    restarts: u64,
    /// When its next start is due.
    due: Option<Nanos>,
}

/// The restart policy of both colours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    slots: [Slot; 2],
}

impl Restarts {
    /// Nothing started yet, nothing due.
    pub fn new() -> Restarts {
        Restarts::default()
    }

    /// `color` serves or shadows: a later death starts it again at once.
    pub fn handle_live(&mut self, color: Color) {
        self.slots[color.index()].live = true;
    }

    /// `color`'s process is gone at `now`: it died (`failed`), or the agent
    /// stopped it on purpose. Its next start is due at once, or after a
    /// pause when it keeps dying before it is live.
    pub fn handle_stopped(&mut self, now: Nanos, color: Color, failed: bool) {
        let slot = &mut self.slots[color.index()];
        slot.restarts += 1;
        slot.failures = if failed && !slot.live {
            slot.failures.saturating_add(1)
        } else {
            0
        };
        slot.live = false;
        slot.due = Some(now.add(backoff(slot.failures)));
    }

    /// `color` was started: nothing is due for it until it stops.
    pub fn handle_started(&mut self, color: Color) {
        self.slots[color.index()].due = None;
    }

    /// When `color`'s next start is due, if one is.
    pub fn due(&self, color: Color) -> Option<Nanos> {
        self.slots[color.index()].due
    }

    /// The earliest start due.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        self.slots.iter().filter_map(|s| s.due).min()
    }

    /// Times `color` was started again.
    pub fn restarts(&self, color: Color) -> u64 {
        self.slots[color.index()].restarts
    }
}

/// The pause before a start after `failures` deaths in a row before live.
fn backoff(failures: u32) -> Nanos {
    if failures <= 1 {
        return Nanos(0);
    }
    let ms = 100i64 << failures.min(6);
    Nanos::from_millis(ms).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLUE: Color = Color::Blue;
    const GREEN: Color = Color::Green;

    fn ms(n: i64) -> Nanos {
        Nanos::from_millis(n)
    }

    #[test]
    fn one_that_worked_starts_again_at_once_however_often_it_dies() {
        let mut r = Restarts::new();
        for i in 0..10 {
            r.handle_started(BLUE);
            r.handle_live(BLUE);
            r.handle_stopped(ms(i * 100), BLUE, true);
            assert_eq!(r.due(BLUE), Some(ms(i * 100)));
        }
        assert_eq!(r.restarts(BLUE), 10);
        assert_eq!(r.due(GREEN), None);
    }

    #[test]
    fn one_that_dies_before_it_is_live_backs_off_to_five_seconds() {
        let mut r = Restarts::new();
        let mut pauses = Vec::new();
        let mut now = ms(1_000);
        for _ in 0..8 {
            r.handle_started(GREEN);
            r.handle_stopped(now, GREEN, true);
            let due = r.due(GREEN).unwrap_or(now);
            pauses.push((due.0 - now.0) / Nanos::PER_MILLI);
            now = due.add(ms(50));
        }
        assert_eq!(pauses, [0, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);
        assert_eq!(r.poll_timeout(), r.due(GREEN));
    }

    #[test]
    fn serving_once_or_a_stop_on_purpose_ends_the_backoff() {
        let mut r = Restarts::new();
        for _ in 0..4 {
            r.handle_stopped(ms(0), GREEN, true);
        }
        assert_eq!(r.due(GREEN), Some(ms(1_600)));
        // The agent restarts it on another release: no failure.
        r.handle_stopped(ms(10), GREEN, false);
        assert_eq!(r.due(GREEN), Some(ms(10)));
        // It fails twice more, then serves, then dies: at once.
        r.handle_stopped(ms(20), GREEN, true);
        r.handle_stopped(ms(30), GREEN, true);
        assert_eq!(r.due(GREEN), Some(ms(430)));
        r.handle_started(GREEN);
        r.handle_live(GREEN);
        r.handle_stopped(ms(900), GREEN, true);
        assert_eq!(r.due(GREEN), Some(ms(900)));
    }

    #[test]
    fn the_earliest_start_due_is_the_timeout() {
        let mut r = Restarts::new();
        assert_eq!(r.poll_timeout(), None);
        for _ in 0..3 {
            r.handle_stopped(ms(0), BLUE, true);
        }
        r.handle_stopped(ms(100), GREEN, true);
        assert_eq!(r.poll_timeout(), Some(ms(100)));
        r.handle_started(GREEN);
        assert_eq!(r.poll_timeout(), Some(ms(800)));
    }
}
