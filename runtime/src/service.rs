//! What a service manager is told, in systemd's `sd_notify` protocol: the
//! agent says `READY=1` once both instances serve, `WATCHDOG=1` from its
//! hub's loop while the unit asks for a watchdog (`WatchdogSec=`), and
//! `STOPPING=1` when a drain begins. Without `$NOTIFY_SOCKET` (not under
//! systemd, or not `Type=notify`) nothing is sent and nothing is checked.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Variables of the protocol that an agent's children must not inherit:
/// only the agent speaks for the service.
pub const INHERITED: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The agent's side of the protocol.
#[derive(Debug)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET` is set.
    enabled: bool,
    /// Between two `WATCHDOG=1`: half the watchdog's timeout, as systemd
    /// advises, so one late turn of the loop does not trip it.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    ready: bool,
    stopping: bool,
    /// A failure to send was reported once; later ones are not.
    warned: bool,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring
    /// `$WATCHDOG_PID` when set).
    pub fn from_env() -> Notifier {
        Notifier::new(
            std::env::var_os("NOTIFY_SOCKET").is_some(),
            sd_notify::watchdog_enabled(),
        )
    }

    /// A notifier that sends when `enabled`, and pings a watchdog of
    /// `timeout` when there is one.
    pub fn new(enabled: bool, timeout: Option<Duration>) -> Notifier {
        Notifier {
            enabled,
            ping_every: timeout
                .filter(|_| enabled)
                .map(|t| (t / 2).max(Duration::from_millis(1))),
            next_ping: None,
            ready: false,
            stopping: false,
            warned: false,
        }
    }

    /// `READY=1` has been said.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Says `READY=1` with `status` for `systemctl status`, once, and never
    /// after a stop began.
    pub fn ready(&mut self, status: &str) {
        if self.ready || self.stopping {
            return;
        }
        self.ready = true;
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Says `STOPPING=1`: a drain began.
    pub fn stopping(&mut self, status: &str) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// Called on every turn of the agent's loop: says `WATCHDOG=1` when the
    /// last one is half a timeout old. A loop that stops turning stops
    /// saying it, and systemd restarts the service.
    pub fn tick(&mut self, now: Instant) {
        if self.ping_due(now) {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// When the next watchdog ping is due (none: no watchdog, or the first
    /// ping is yet to be said, which the next turn does).
    pub fn next_ping(&self) -> Option<Instant> {
        self.ping_every.and(self.next_ping)
    }

    fn ping_due(&mut self, now: Instant) -> bool {
        let Some(every) = self.ping_every else {
            return false;
        };
        if self.next_ping.is_some_and(|next| now < next) {
            return false;
        }
        self.next_ping = Some(now + every);
        true
    }

    fn send(&mut self, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            if !self.warned {
                self.warned = true;
                tracing::warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_timeout() {
        let mut n = Notifier::new(true, Some(Duration::from_secs(10)));
        let t0 = Instant::now();
        assert!(n.ping_due(t0), "the first turn pings");
        assert!(!n.ping_due(t0 + Duration::from_millis(4_999)));
        assert!(n.ping_due(t0 + Duration::from_secs(5)));
        assert!(!n.ping_due(t0 + Duration::from_secs(6)));
        assert!(n.ping_due(t0 + Duration::from_secs(12)), "late turns ping");
    }

    #[test]
    fn no_watchdog_no_pings() {
        let t0 = Instant::now();
        assert!(!Notifier::new(true, None).ping_due(t0));
        // A watchdog without a socket to tell has no one to tell.
        assert!(!Notifier::new(false, Some(Duration::from_secs(1))).ping_due(t0));
    }

    #[test]
    fn ready_once_and_never_after_stopping() {
        let mut n = Notifier::new(false, None);
        n.stopping("draining");
        n.ready("serving");
        assert!(!n.is_ready());
        let mut n = Notifier::new(false, None);
        n.ready("serving");
        assert!(n.is_ready());
    }
}
