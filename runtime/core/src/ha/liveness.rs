//! Liveness of the two instances from what they send, never from the
//! transport's idle timeout. An instance is expected to answer while it
//! owes the agent something (input it has not processed, the work of a
//! rejoin; the supervisor says when, [`Liveness::owes`]) and for a while
//! after each ping:
//! - while it owes, it is pinged once silent for `interval`, and lost once
//!   silent for `timeout` (counted from when it began to owe, if later);
//! - however much or little it owes, it is pinged every `keepalive`, which
//!   tells it the agent is there while no input goes to it, and must answer
//!   each ping within `timeout`.
//!
//! Any frame is heard. Under load an instance's output keeps coming and it
//! is pinged only every `keepalive`; on an idle gateway, once it has
//! answered the last input, also only every `keepalive`: heartbeats cost
//! next to nothing either way. Only an instance that owes and is quiet (a
//! slow batch, a hang) is pinged every `interval`.
//!
//! Drive it with [`Liveness::watch`] when an instance connects (it owes
//! from then on until told otherwise), [`Liveness::owes`] when what it owes
//! may have changed, [`Liveness::handle_heard`] for each frame it sends,
//! [`Liveness::poll_ping`] to learn whom to ping now, and
//! [`Liveness::poll_timeout`] to learn who died; [`Liveness::next_wakeup`]
//! says when to call again.

use super::msg::{Color, Nanos};

/// Heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How long an instance that owes an answer may be silent before the
    /// agent pings it (and pings it again, while it stays silent).
    pub interval: Nanos,
    /// How long an instance may leave the agent without an answer it owes
    /// (or a ping's) before it is lost.
    pub timeout: Nanos,
    /// Longest time between two pings to an instance, however much it
    /// sends: an instance takes the agent's silence for its death.
    pub keepalive: Nanos,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            interval: Nanos::from_millis(5),
            timeout: Nanos::from_millis(50),
            keepalive: Nanos::from_millis(1000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watch {
    /// When it was last heard from (or began to be watched).
    heard: Nanos,
    /// Since when it owes an answer (`None`: it owes nothing).
    owes_since: Option<Nanos>,
    /// When the oldest ping not answered yet went out.
    ping_since: Option<Nanos>,
    /// When it is pinged for being quiet while it owes.
    next_ping: Nanos,
    /// When it is pinged however much it sends.
    keepalive_at: Nanos,
    pings: u64,
}

impl Watch {
    fn ping_due(&self) -> Nanos {
        match self.owes_since {
            Some(_) => self.next_ping.min(self.keepalive_at),
            None => self.keepalive_at,
        }
    }

    /// When it is lost if nothing comes: `timeout` after the earliest
    /// moment an answer was expected and none came since.
    fn deadline(&self, timeout: Nanos) -> Option<Nanos> {
        let owed = self.owes_since.map(|since| since.max(self.heard));
        owed.into_iter()
            .chain(self.ping_since)
            .min()
            .map(|since| since.add(timeout))
    }
}

/// Heartbeat deadlines of both instances.
#[derive(Debug)]
pub struct Liveness {
    config: LivenessConfig,
    watches: [Option<Watch>; 2],
}

impl Liveness {
    /// Nobody watched yet.
    pub fn new(config: LivenessConfig) -> Liveness {
        Liveness {
            config,
            watches: [None, None],
        }
    }

    /// Starts watching `color` (it connected): it owes from now on, so its
    /// first deadline is `now + timeout`; first ping now.
    pub fn watch(&mut self, now: Nanos, color: Color) {
        self.watches[color.index()] = Some(Watch {
            heard: now,
            owes_since: Some(now),
            ping_since: None,
            next_ping: now,
            keepalive_at: now.add(self.config.keepalive),
            pings: 0,
        });
    }

    /// Stops watching `color` (it was lost or disconnected).
    pub fn forget(&mut self, color: Color) {
        self.watches[color.index()] = None;
    }

    /// True when `color` is watched.
    pub fn is_watched(&self, color: Color) -> bool {
        self.watches[color.index()].is_some()
    }

    /// Whether `color` owes the agent an answer, as of `now`: from the
    /// moment it begins to owe, it has `timeout` to say something (and is
    /// pinged after `interval` of silence); once it owes nothing, only the
    /// keepalive pings are expected to be answered.
    pub fn owes(&mut self, now: Nanos, color: Color, owes: bool) {
        if let Some(watch) = &mut self.watches[color.index()] {
            match (owes, watch.owes_since) {
                (true, None) => {
                    watch.owes_since = Some(now);
                    watch.next_ping = watch.next_ping.max(now.add(self.config.interval));
                }
                (false, Some(_)) => watch.owes_since = None,
                _ => {}
            }
        }
    }

    /// A frame came from `color` at `now` (its arrival, which may be
    /// before the frame is handled): if it came after the pings so far, it
    /// answers them; its deadline, while it owes, moves to `now + timeout`,
    /// and it is not pinged for quiet before `now + interval`.
    pub fn handle_heard(&mut self, now: Nanos, color: Color) {
        if let Some(watch) = &mut self.watches[color.index()] {
            watch.heard = watch.heard.max(now);
            // A frame that arrived before the ping went out says nothing of
            // whether the instance is still alive to answer it.
            if watch.ping_since.is_some_and(|since| since <= now) {
                watch.ping_since = None;
            }
            watch.next_ping = watch.next_ping.max(now.add(self.config.interval));
        }
    }

    /// An instance whose deadline passed; it is forgotten (returned once).
    pub fn poll_timeout(&mut self, now: Nanos) -> Option<Color> {
        let timeout = self.config.timeout;
        let color = Color::BOTH.into_iter().find(|c| {
            self.watches[c.index()]
                .and_then(|w| w.deadline(timeout))
                .is_some_and(|d| d <= now)
        })?;
        self.watches[color.index()] = None;
        Some(color)
    }

    /// An instance due for a ping (owing and silent for an interval, or not
    /// pinged for `keepalive`), with the ping number; it is expected to
    /// answer within `timeout`, and the next quiet ping is one interval
    /// later.
    pub fn poll_ping(&mut self, now: Nanos) -> Option<(Color, u64)> {
        for color in Color::BOTH {
            if let Some(watch) = &mut self.watches[color.index()] {
                if watch.ping_due() <= now {
                    watch.next_ping = now.add(self.config.interval);
                    watch.keepalive_at = now.add(self.config.keepalive);
                    watch.pings += 1;
                    watch.ping_since.get_or_insert(now);
                    return Some((color, watch.pings));
                }
            }
        }
        None
    }

    /// The earliest time a ping or a deadline is due.
    pub fn next_wakeup(&self) -> Option<Nanos> {
        let timeout = self.config.timeout;
        self.watches
            .iter()
            .flatten()
            .map(|w| {
                w.deadline(timeout)
                    .map_or(w.ping_due(), |d| d.min(w.ping_due()))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: i64) -> Nanos {
        Nanos::from_millis(ms)
    }

    fn liveness() -> Liveness {
        Liveness::new(LivenessConfig {
            interval: ms(5),
            timeout: ms(20),
            keepalive: ms(50),
        })
    }

    #[test]
    fn an_instance_that_keeps_answering_stays_alive() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        for t in (0..100).step_by(5) {
            l.handle_heard(ms(t), Color::Blue);
            assert_eq!(l.poll_timeout(ms(t)), None);
        }
        assert!(l.is_watched(Color::Blue));
    }

    #[test]
    fn a_silent_instance_is_lost_at_its_deadline_once() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        l.watch(ms(0), Color::Green);
        l.handle_heard(ms(10), Color::Blue);
        l.handle_heard(ms(10), Color::Green);
        l.handle_heard(ms(15), Color::Green);
        assert_eq!(l.poll_timeout(ms(29)), None);
        assert_eq!(l.poll_timeout(ms(30)), Some(Color::Blue));
        assert_eq!(l.poll_timeout(ms(30)), None);
        // Green, heard at 15 ms, is pinged 5 ms later.
        assert_eq!(l.next_wakeup(), Some(ms(20)));
        assert_eq!(l.poll_timeout(ms(35)), Some(Color::Green));
        assert_eq!(l.next_wakeup(), None);
    }

    #[test]
    fn a_silent_instance_is_pinged_every_interval() {
        let mut l = liveness();
        l.watch(ms(0), Color::Green);
        assert_eq!(l.poll_ping(ms(0)), Some((Color::Green, 1)));
        assert_eq!(l.poll_ping(ms(4)), None);
        assert_eq!(l.next_wakeup(), Some(ms(5)));
        assert_eq!(l.poll_ping(ms(5)), Some((Color::Green, 2)));
    }

    #[test]
    fn an_instance_heard_within_each_interval_is_pinged_only_to_keep_it_alive() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        assert_eq!(l.poll_ping(ms(0)), Some((Color::Blue, 1)));
        // Output every 3 ms, faster than the 5 ms interval: one ping per
        // 50 ms keepalive, none in between.
        let mut pinged = Vec::new();
        for t in (3..=120).step_by(3) {
            l.handle_heard(ms(t), Color::Blue);
            if l.poll_ping(ms(t)).is_some() {
                pinged.push(t);
            }
            assert_eq!(l.poll_timeout(ms(t)), None);
        }
        assert_eq!(pinged, vec![51, 102]);
        // Last heard at 120 ms: the wake-up is the next ping, not sooner.
        assert_eq!(l.next_wakeup(), Some(ms(125)));
        assert_eq!(l.poll_ping(ms(124)), None);
        assert_eq!(l.poll_ping(ms(125)), Some((Color::Blue, 4)));
        // Still silent: lost at its deadline, 20 ms after it was last heard.
        assert_eq!(l.poll_timeout(ms(139)), None);
        assert_eq!(l.poll_timeout(ms(140)), Some(Color::Blue));
    }

    /// `color` connected at 0 ms (pinged then), answered at 1 ms, and has
    /// owed nothing since.
    fn answered(color: Color, pinged: bool) -> Liveness {
        let mut l = liveness();
        l.watch(ms(0), color);
        if pinged {
            assert_eq!(l.poll_ping(ms(0)), Some((color, 1)));
        }
        l.handle_heard(ms(1), color);
        l.owes(ms(1), color, false);
        l
    }

    #[test]
    fn an_instance_that_owes_nothing_is_pinged_only_to_keep_it_alive() {
        let mut l = answered(Color::Green, true);
        // Silent far longer than the 5 ms interval and the 20 ms timeout:
        // nothing is expected of it before the 50 ms keepalive.
        assert_eq!(l.next_wakeup(), Some(ms(50)));
        assert_eq!(l.poll_ping(ms(49)), None);
        assert_eq!(l.poll_timeout(ms(49)), None);
        assert_eq!(l.poll_ping(ms(50)), Some((Color::Green, 2)));
        // That ping is answered: quiet again until the next keepalive.
        l.handle_heard(ms(52), Color::Green);
        assert_eq!(l.poll_timeout(ms(99)), None);
        assert_eq!(l.poll_ping(ms(99)), None);
        assert_eq!(l.poll_ping(ms(100)), Some((Color::Green, 3)));
        // This one is not: lost a timeout after it went out.
        lost_at(&mut l, Color::Green, 120);
    }

    /// Nothing is due before `t` ms, when `color` is lost.
    fn lost_at(l: &mut Liveness, color: Color, t: i64) {
        assert_eq!(l.next_wakeup(), Some(ms(t)));
        assert_eq!(l.poll_timeout(ms(t - 1)), None);
        assert_eq!(l.poll_timeout(ms(t)), Some(color));
    }

    #[test]
    fn a_frame_that_arrived_before_a_ping_does_not_answer_it() {
        let mut l = answered(Color::Green, true);
        assert_eq!(l.poll_ping(ms(50)), Some((Color::Green, 2)));
        // A frame that arrived at 49 ms is handled after the ping went
        // out: the ping is still unanswered, and its deadline stands.
        l.handle_heard(ms(49), Color::Green);
        lost_at(&mut l, Color::Green, 70);
    }

    #[test]
    fn an_instance_that_begins_to_owe_has_a_timeout_from_then() {
        let mut l = answered(Color::Blue, false);
        // Input goes to it at 30 ms, long after it was last heard.
        l.owes(ms(30), Color::Blue, true);
        assert_eq!(l.poll_timeout(ms(30)), None);
        assert_eq!(l.next_wakeup(), Some(ms(35)));
        assert_eq!(l.poll_ping(ms(35)), Some((Color::Blue, 1)));
        assert_eq!(l.poll_timeout(ms(49)), None);
        assert_eq!(l.poll_timeout(ms(50)), Some(Color::Blue));
    }

    #[test]
    fn an_instance_that_answers_what_it_owes_stops_being_pinged_for_quiet() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        l.owes(ms(0), Color::Blue, true);
        l.handle_heard(ms(2), Color::Blue);
        l.owes(ms(2), Color::Blue, false);
        // Owing, it would have been pinged at 7 ms; now only at 50.
        assert_eq!(l.poll_ping(ms(7)), None);
        assert_eq!(l.next_wakeup(), Some(ms(50)));
    }
}
