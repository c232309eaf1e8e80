//! SG-Ready contact patterns and write order.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;

use embedded_hal::digital::OutputPin;
use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};
use tandem_firmware::sg_ready::{SgMode, SgReady};

#[test]
fn each_mode_sets_the_label_pattern() {
    let mut p1 = Mock::new(&[
        Transaction::set(State::High), // Lock
        Transaction::set(State::Low),  // Normal
        Transaction::set(State::Low),  // Recommend
        Transaction::set(State::High), // ForceOn
    ]);
    let mut p2 = Mock::new(&[
        Transaction::set(State::Low),
        Transaction::set(State::Low),
        Transaction::set(State::High),
        Transaction::set(State::High),
    ]);
    let mut sg = SgReady::new(p1.clone(), p2.clone());
    for m in [
        SgMode::Lock,
        SgMode::Normal,
        SgMode::Recommend,
        SgMode::ForceOn,
    ] {
        sg.set(m).unwrap();
        assert_eq!(sg.mode(), Some(m));
    }
    drop(sg.destroy());
    p1.done();
    p2.done();
}

#[test]
fn contacts_round_trip() {
    for m in [
        SgMode::Lock,
        SgMode::Normal,
        SgMode::Recommend,
        SgMode::ForceOn,
    ] {
        let (c1, c2) = m.contacts();
        assert_eq!(SgMode::from_contacts(c1, c2), m);
    }
    assert_eq!(SgMode::Lock.number(), 1);
    assert_eq!(SgMode::ForceOn.number(), 4);
}

/// A pin that records every write into a log shared by both pins.
struct LogPin {
    id: u8,
    log: Rc<RefCell<Vec<(u8, bool)>>>,
}

impl embedded_hal::digital::ErrorType for LogPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for LogPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.log.borrow_mut().push((self.id, false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.log.borrow_mut().push((self.id, true));
        Ok(())
    }
}

/// Replays the writes and checks that no intermediate state is Lock unless
/// Lock is the target, for every transition.
#[test]
fn transitions_never_pass_through_lock() {
    let all = [
        SgMode::Lock,
        SgMode::Normal,
        SgMode::Recommend,
        SgMode::ForceOn,
    ];
    for from in all {
        for to in all {
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut sg = SgReady::new(
                LogPin {
                    id: 1,
                    log: log.clone(),
                },
                LogPin {
                    id: 2,
                    log: log.clone(),
                },
            );
            sg.set(from).unwrap();
            log.borrow_mut().clear();
            sg.set(to).unwrap();
            let mut c = from.contacts();
            for &(id, level) in log.borrow().iter() {
                if id == 1 {
                    c.0 = level
                } else {
                    c.1 = level
                }
                if to != SgMode::Lock {
                    assert_ne!(c, SgMode::Lock.contacts(), "{from:?} -> {to:?}");
                }
            }
            assert_eq!(c, to.contacts());
        }
    }
}
