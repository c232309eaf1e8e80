//! IEC 61851-1 control pilot: ADC voltage -> pilot voltage -> state, with
//! hysteresis.
//!
//! The pilot swings +-12 V; an ADC cannot see that directly, so boards put
//! it through a divider with an offset:
//!
//! `V_adc = V_pilot * ratio + offset_v`, hence
//! `V_pilot = (V_adc - offset_v) / ratio`.
//!
//! For example 100k/10k to a 1.65 V mid-rail reference gives
//! `ratio = 10/110 ~ 0.0909` and `offset_v = 1.5` (+12 V -> 2.59 V,
//! -12 V -> 0.41 V). Measure the high level of the PWM (or the DC level when
//! the EVSE does not oscillate) to classify the state.

/// Divider and offset between the pilot line and the ADC input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PilotDivider {
    /// ADC volts per pilot volt (must not be 0)
    pub ratio: f32,
    /// ADC volts when the pilot is at 0 V
    pub offset_v: f32,
}

impl PilotDivider {
    /// Pilot voltage for an ADC voltage, `None` when `ratio` is 0 or the
    /// result is not finite.
    pub fn pilot_volts(self, adc_volts: f32) -> Option<f32> {
        let v = (adc_volts - self.offset_v) / self.ratio;
        v.is_finite().then_some(v)
    }

    /// ADC voltage for a pilot voltage (what a simulated ADC should see).
    pub fn adc_volts(self, pilot_volts: f32) -> f32 {
        pilot_volts * self.ratio + self.offset_v
    }
}

/// Vehicle states seen on the pilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PilotState {
    /// -12 V: EVSE not available
    F,
    /// 0 V: error (pilot shorted to PE)
    E,
    /// 3 V: charging, ventilation required
    D,
    /// 6 V: charging
    C,
    /// 9 V: vehicle connected, not charging
    B,
    /// 12 V: no vehicle
    A,
}

impl PilotState {
    /// All states from the lowest voltage to the highest.
    pub const ALL: [PilotState; 6] = [
        PilotState::F,
        PilotState::E,
        PilotState::D,
        PilotState::C,
        PilotState::B,
        PilotState::A,
    ];

    /// Nominal pilot voltage.
    pub fn nominal_volts(self) -> f32 {
        match self {
            PilotState::A => 12.0,
            PilotState::B => 9.0,
            PilotState::C => 6.0,
            PilotState::D => 3.0,
            PilotState::E => 0.0,
            PilotState::F => -12.0,
        }
    }

    /// Band of this state without hysteresis: `[low, high)`, boundaries
    /// halfway between nominal voltages.
    pub fn band(self) -> (f32, f32) {
        match self {
            PilotState::A => (10.5, f32::INFINITY),
            PilotState::B => (7.5, 10.5),
            PilotState::C => (4.5, 7.5),
            PilotState::D => (1.5, 4.5),
            PilotState::E => (-6.0, 1.5),
            PilotState::F => (f32::NEG_INFINITY, -6.0),
        }
    }

    /// State whose band holds `volts` (no hysteresis); `None` for NaN.
    pub fn classify(volts: f32) -> Option<PilotState> {
        PilotState::ALL.into_iter().find(|s| {
            let (lo, hi) = s.band();
            volts >= lo && volts < hi
        })
    }
}

/// Classifies pilot voltages with hysteresis: the state changes only when
/// the voltage leaves the current state's band by more than `margin`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PilotClassifier {
    margin: f32,
    state: Option<PilotState>,
}

impl PilotClassifier {
    /// A classifier with no state yet; `margin` in pilot volts (0.5 V is a
    /// good start, must be under 1.5 V for the bands to stay reachable).
    pub fn new(margin: f32) -> Self {
        Self {
            margin: margin.abs(),
            state: None,
        }
    }

    /// The current state, if any voltage was seen.
    pub fn state(&self) -> Option<PilotState> {
        self.state
    }

    /// Feeds one pilot voltage and returns the state after it. NaN leaves
    /// the state as it was.
    pub fn update(&mut self, volts: f32) -> Option<PilotState> {
        let next = match self.state {
            Some(current) => {
                let (lo, hi) = current.band();
                if volts >= lo - self.margin && volts < hi + self.margin {
                    Some(current)
                } else {
                    PilotState::classify(volts).or(Some(current))
                }
            }
            None => PilotState::classify(volts),
        };
        self.state = next;
        next
    }
}
