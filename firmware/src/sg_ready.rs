//! SG-Ready heat-pump control over two relay outputs.
//!
//! Per the SG-Ready label (Bundesverband Waermepumpe), contacts (1, 2):
//!
//! | mode | contact 1 | contact 2 |
//! |---|---|---|
//! | 1 Lock (utility block) | 1 | 0 |
//! | 2 Normal | 0 | 0 |
//! | 3 Recommend (switch-on recommendation) | 0 | 1 |
//! | 4 ForceOn (switch-on command) | 1 | 1 |
//!
//! Two pins cannot switch at once. The driver orders the writes so that a
//! transition never passes through Lock unless Lock is the target: when the
//! target has contact 1 closed, contact 2 is written first; otherwise
//! contact 1 is written first (e.g. Normal -> ForceOn passes Recommend,
//! ForceOn -> Normal passes Recommend).

use embedded_hal::digital::OutputPin;

/// SG-Ready operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgMode {
    /// Mode 1: utility lock, heat pump off.
    Lock,
    /// Mode 2: normal operation.
    Normal,
    /// Mode 3: switch-on recommendation (cheap or surplus power).
    Recommend,
    /// Mode 4: switch-on command.
    ForceOn,
}

impl SgMode {
    /// Contact states (contact 1, contact 2); `true` = closed / high.
    pub fn contacts(self) -> (bool, bool) {
        match self {
            SgMode::Lock => (true, false),
            SgMode::Normal => (false, false),
            SgMode::Recommend => (false, true),
            SgMode::ForceOn => (true, true),
        }
    }

    /// The mode for contact states.
    pub fn from_contacts(c1: bool, c2: bool) -> Self {
        match (c1, c2) {
            (true, false) => SgMode::Lock,
            (false, false) => SgMode::Normal,
            (false, true) => SgMode::Recommend,
            (true, true) => SgMode::ForceOn,
        }
    }

    /// SG-Ready mode number 1..=4.
    pub fn number(self) -> u8 {
        match self {
            SgMode::Lock => 1,
            SgMode::Normal => 2,
            SgMode::Recommend => 3,
            SgMode::ForceOn => 4,
        }
    }
}

/// Errors of the SG-Ready driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E1, E2> {
    /// Writing contact 1 failed.
    Pin1(E1),
    /// Writing contact 2 failed.
    Pin2(E2),
}

/// Two outputs driving the SG-Ready inputs of a heat pump.
#[derive(Debug)]
pub struct SgReady<P1, P2> {
    pin1: P1,
    pin2: P2,
    mode: Option<SgMode>,
}

impl<P1: OutputPin, P2: OutputPin> SgReady<P1, P2> {
    /// Takes the pins; nothing is written until [`set`](Self::set).
    pub fn new(pin1: P1, pin2: P2) -> Self {
        Self {
            pin1,
            pin2,
            mode: None,
        }
    }

    /// Gives the pins back.
    pub fn destroy(self) -> (P1, P2) {
        (self.pin1, self.pin2)
    }

    /// The mode last set successfully (`None` before the first, or after a
    /// failed write left the contacts unknown).
    pub fn mode(&self) -> Option<SgMode> {
        self.mode
    }

    /// Drives both contacts to `mode`.
    pub fn set(&mut self, mode: SgMode) -> Result<(), Error<P1::Error, P2::Error>> {
        let (c1, c2) = mode.contacts();
        self.mode = None;
        if c1 {
            self.write2(c2)?;
            self.write1(c1)?;
        } else {
            self.write1(c1)?;
            self.write2(c2)?;
        }
        self.mode = Some(mode);
        Ok(())
    }

    fn write1(&mut self, high: bool) -> Result<(), Error<P1::Error, P2::Error>> {
        if high {
            self.pin1.set_high()
        } else {
            self.pin1.set_low()
        }
        .map_err(Error::Pin1)
    }

    fn write2(&mut self, high: bool) -> Result<(), Error<P1::Error, P2::Error>> {
        if high {
            self.pin2.set_high()
        } else {
            self.pin2.set_low()
        }
        .map_err(Error::Pin2)
    }
}
