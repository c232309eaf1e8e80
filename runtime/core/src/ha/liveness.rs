//! Liveness of the two instances from heartbeats, never from the transport's
//! idle timeout: the agent pings every `interval`; an instance whose answer
//! has not come for `timeout` is declared lost.
//!
//! Drive it with [`Liveness::watch`] when an instance connects,
//! [`Liveness::handle_heartbeat`] for each answer, [`Liveness::poll_ping`] to
//! learn whom to ping now, and [`Liveness::poll_timeout`] to learn who died;
//! [`Liveness::next_wakeup`] says when to call again.

use super::msg::{Color, Nanos};

/// Heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How often the agent pings each instance.
    pub interval: Nanos,
    /// How long without an answer before an instance is lost.
    pub timeout: Nanos,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            interval: Nanos::from_millis(5),
            timeout: Nanos::from_millis(50),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watch {
    deadline: Nanos,
    next_ping: Nanos,
    pings: u64,
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

    /// `color` answered: its deadline moves to `now + timeout`.
    pub fn handle_heartbeat(&mut self, now: Nanos, color: Color) {
        if let Some(watch) = &mut self.watches[color.index()] {
            watch.deadline = watch.deadline.max(now.add(self.config.timeout));
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

    /// An instance due for a ping, with the ping number; the next ping is
    /// scheduled one interval later.
    pub fn poll_ping(&mut self, now: Nanos) -> Option<(Color, u64)> {
        for color in Color::BOTH {
            if let Some(watch) = &mut self.watches[color.index()] {
                if watch.next_ping <= now {
                    watch.next_ping = now.add(self.config.interval);
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
            .map(|w| w.deadline.min(w.next_ping))
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
        })
    }

    #[test]
    fn an_instance_that_keeps_answering_stays_alive() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        for t in (0..100).step_by(5) {
            l.handle_heartbeat(ms(t), Color::Blue);
            assert_eq!(l.poll_timeout(ms(t)), None);
        }
        assert!(l.is_watched(Color::Blue));
    }

    #[test]
    fn a_silent_instance_is_lost_at_its_deadline_once() {
        let mut l = liveness();
        l.watch(ms(0), Color::Blue);
        l.watch(ms(0), Color::Green);
        l.handle_heartbeat(ms(10), Color::Blue);
        l.handle_heartbeat(ms(10), Color::Green);
        l.handle_heartbeat(ms(15), Color::Green);
        assert_eq!(l.poll_timeout(ms(29)), None);
        assert_eq!(l.poll_timeout(ms(30)), Some(Color::Blue));
        assert_eq!(l.poll_timeout(ms(30)), None);
        assert_eq!(l.next_wakeup(), Some(ms(0)));
        assert_eq!(l.poll_timeout(ms(35)), Some(Color::Green));
        assert_eq!(l.next_wakeup(), None);
    }

    #[test]
    fn pings_go_out_every_interval() {
        let mut l = liveness();
        l.watch(ms(0), Color::Green);
        assert_eq!(l.poll_ping(ms(0)), Some((Color::Green, 1)));
        assert_eq!(l.poll_ping(ms(4)), None);
        assert_eq!(l.next_wakeup(), Some(ms(5)));
        assert_eq!(l.poll_ping(ms(5)), Some((Color::Green, 2)));
    }
}
