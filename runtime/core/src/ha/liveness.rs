//! Liveness of the two instances from what they send, never from the
//! transport's idle timeout: an instance not heard from for `interval` is
//! pinged; one not heard from for `timeout` is declared lost. Any frame is
//! heard, so an instance whose output keeps coming is pinged only every
//! `keepalive` (which tells it the agent is there while no input goes to it:
//! it may still be working through earlier input): under load and on a
//! gateway whose sources report often, heartbeats cost next to nothing; a
//! quiet instance is pinged every `interval`.
//!
//! Drive it with [`Liveness::watch`] when an instance connects,
//! [`Liveness::handle_heard`] for each frame it sends (a heartbeat's answer
//! or any other), [`Liveness::poll_ping`] to learn whom to ping now, and
//! [`Liveness::poll_timeout`] to learn who died; [`Liveness::next_wakeup`]
//! says when to call again.

use super::msg::{Color, Nanos};

/// Heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How long an instance may be silent before the agent pings it (and
    /// pings it again, while it stays silent).
    pub interval: Nanos,
    /// How long silent before an instance is lost.
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
    deadline: Nanos,
    /// When it is pinged for having been quiet.
    next_ping: Nanos,
    /// When it is pinged however much it sends.
    keepalive_at: Nanos,
    pings: u64,
}

impl Watch {
    fn ping_due(&self) -> Nanos {
        self.next_ping.min(self.keepalive_at)
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

    /// Starts watching `color` (it connected): first deadline `now + timeout`, first ping now.
    pub fn watch(&mut self, now: Nanos, color: Color) {
        self.watches[color.index()] = Some(Watch {
            deadline: now.add(self.config.timeout),
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

    /// A frame came from `color`: its deadline moves to `now + timeout`,
    /// and it is not pinged before `now + interval`.
    pub fn handle_heard(&mut self, now: Nanos, color: Color) {
        if let Some(watch) = &mut self.watches[color.index()] {
            watch.deadline = watch.deadline.max(now.add(self.config.timeout));
            watch.next_ping = watch.next_ping.max(now.add(self.config.interval));
        }
    }

    /// An instance whose deadline passed; it is forgotten (returned once).
    pub fn poll_timeout(&mut self, now: Nanos) -> Option<Color> {
        let color = Color::BOTH
            .into_iter()
            .find(|c| self.watches[c.index()].is_some_and(|w| w.deadline <= now))?;
        self.watches[color.index()] = None;
        Some(color)
    }

    /// An instance due for a ping (silent for an interval, or not pinged for
    /// `keepalive`), with the ping number; the next ping is scheduled one
    /// interval later.
    pub fn poll_ping(&mut self, now: Nanos) -> Option<(Color, u64)> {
        for color in Color::BOTH {
            if let Some(watch) = &mut self.watches[color.index()] {
                if watch.ping_due() <= now {
                    watch.next_ping = now.add(self.config.interval);
                    watch.keepalive_at = now.add(self.config.keepalive);
                    watch.pings += 1;
                    return Some((color, watch.pings));
                }
            }
        }
        None
    }

    /// The earliest time a ping or a deadline is due.
    pub fn next_wakeup(&self) -> Option<Nanos> {
        self.watches
            .iter()
            .flatten()
            .map(|w| w.deadline.min(w.ping_due()))
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
}
