//! Why an upgrade does not start, rolls back, or ends with a warning: the
//! texts an operator reads in `tandem upgrade`, `tandem rollback` and
//! `tandem status`.

use super::{rate, Phase};
use crate::ha::downstream::Divergence;
use crate::ha::msg::{Color, Nanos};
use core::fmt;
use thiserror::Error;

/// A phase that outlived its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The phase.
    pub phase: Phase,
    /// How long it was allowed.
    pub allowed: Nanos,
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phase {} did not end within its deadline of {:.1} s",
            self.phase,
            self.allowed.0 as f64 / 1e9
        )
    }
}

/// What kept a phase from ending in time, when it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lateness {
    /// Transfer: the new colour's instance never said hello.
    NeverConnected,
    /// Transfer: it connected but did not restore and catch up.
    NotCaughtUp,
    /// A period counted in records: too few were compared.
    TooFewRecords,
}

impl fmt::Display for Lateness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lateness::NeverConnected => "the new version's instance never connected",
            Lateness::NotCaughtUp => "the new version's instance did not catch up",
            Lateness::TooFewRecords => "too few records were compared",
        })
    }
}

/// The comparison figures of a period that went past policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// Records compared in the period.
    pub compared: u64,
    /// Of those, how many differed.
    pub mismatched: u64,
    /// The policy's allowance above the noise floor.
    pub max_mismatch: f64,
    /// The rate between the two old instances before the upgrade.
    pub noise_floor: f64,
    /// The first difference kept, if any.
    pub first: Option<Divergence>,
}

impl Mismatch {
    /// Mismatched over compared.
    pub fn rate(&self) -> f64 {
        rate(self.compared, self.mismatched)
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} compared records differ (rate {:.4}), above the {} allowed over a noise floor of {:.4}",
            self.mismatched,
            self.compared,
            self.rate(),
            self.max_mismatch,
            self.noise_floor
        )?;
        if let Some(first) = &self.first {
            write!(f, "; the first: {first}")?;
        }
        Ok(())
    }
}

/// Why an upgrade rolled back.
#[derive(Clone, Copy, Debug, Error, PartialEq)]
pub enum RollbackReason {
    /// Someone asked for it.
    #[error("asked for by `tandem rollback`")]
    Asked,
    /// The outputs differed past policy.
    #[error("{0}")]
    Mismatch(Mismatch),
    /// A phase outlived its deadline.
    #[error("{deadline}{}", .why.map(|w| format!("; {w}")).unwrap_or_default())]
    Overdue {
        /// Which phase, and its deadline.
        deadline: Deadline,
        /// What held it up, when known.
        why: Option<Lateness>,
    },
    /// The new version's instance was lost before the old one was replaced.
    #[error("the new version's instance was lost")]
    NewLost,
    /// The old version's instance was lost before the new one had restored:
    /// neither has state to give.
    #[error("the old version's instance was lost during the transfer")]
    OldLostInTransfer,
}

/// Why an upgrade ended promoted but not as planned.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Warning {
    /// The replacing phase outlived its deadline.
    #[error(
        "{deadline}: {color}'s second copy of the new version is not serving yet; it keeps \
         being restarted (the old version's state is gone, so there is nothing to roll back to)"
    )]
    NotServingYet {
        /// The replacing phase's deadline.
        deadline: Deadline,
        /// The old colour, restarting on the new release.
        color: Color,
    },
}

/// Why an upgrade cannot start.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum StartError {
    /// One runs already.
    #[error("an upgrade is running (phase {phase}); wait for it or `tandem rollback`")]
    Running {
        /// Its phase.
        phase: Phase,
    },
    /// The unit is not redundant: the old state must survive the transfer.
    #[error("both instances must be serving before an upgrade starts; see `tandem status`")]
    NotRedundant,
}

/// Why a rollback cannot be done.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RollbackError {
    /// No upgrade runs.
    #[error("no upgrade is running")]
    NotRunning,
    /// The old version's state is already gone.
    #[error(
        "too late: the old version is being replaced by a second copy of the new one; \
         upgrade again to the old graph instead"
    )]
    TooLate,
}
