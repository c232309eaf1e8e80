//! Bytes on their way to the agent, and the budget that holds output back
//! while too many wait for the link.

use std::sync::Arc;

use bytes::Bytes;
use tandem_core::ha::ToAgent;
use tandem_core::wire;
use tokio::sync::mpsc::UnboundedSender;

use super::OUTPUT_BYTES;

pub(super) fn send(out: &Outbox, msg: ToAgent) {
    if let Ok(bytes) = wire::encode_to_bytes(&msg) {
        out.push(bytes);
    }
}

/// Bytes on their way to the agent.
#[derive(Clone, Debug)]
pub(super) struct Outbox {
    pub(super) tx: UnboundedSender<Bytes>,
    pub(super) budget: Arc<Budget>,
}

impl Outbox {
    /// Queues bytes at once (control frames: never held back).
    pub(super) fn push(&self, bytes: Bytes) {
        self.budget.take(bytes.len());
        let _ = self.tx.send(bytes);
    }

    /// Queues output, first waiting while more than [`OUTPUT_BYTES`] wait
    /// for the link: the topology then stops, its input backs up to the
    /// link, and the agent holds its input back.
    pub(super) fn push_output(&self, bytes: Bytes) {
        self.budget.wait_below(OUTPUT_BYTES);
        self.push(bytes);
    }
}

/// Bytes queued to the link and not yet written.
#[derive(Debug, Default)]
pub(super) struct Budget {
    queued: std::sync::Mutex<(usize, bool)>,
    room: std::sync::Condvar,
}

impl Budget {
    pub(super) fn take(&self, len: usize) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).0 += len;
    }

    pub(super) fn release(&self, len: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        q.0 = q.0.saturating_sub(len);
        self.room.notify_all();
    }

    /// The link is gone: nobody waits any more.
    pub(super) fn close(&self) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.room.notify_all();
    }

    pub(super) fn wait_below(&self, limit: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        while q.0 > limit && !q.1 {
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn output_for_a_link_that_does_not_drain_stays_within_its_bound() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let out = Outbox {
            tx,
            budget: Arc::new(Budget::default()),
        };
        let frame = Bytes::from(vec![0u8; 1 << 20]);
        let frames = 64;
        let pusher = {
            let (out, frame) = (out.clone(), frame.clone());
            std::thread::spawn(move || {
                for _ in 0..frames {
                    out.push_output(frame.clone());
                }
            })
        };
        // The link writes nothing: the topology's sink is held once more
        // than OUTPUT_BYTES wait, with one frame over at most.
        let admitted = OUTPUT_BYTES / frame.len() + 1;
        for _ in 0..admitted {
            assert!(rx.blocking_recv().is_some());
        }
        let queued = out.budget.queued.lock().unwrap().0;
        assert_eq!(queued, admitted * frame.len());
        assert!(queued <= OUTPUT_BYTES + frame.len());
        assert!(rx.try_recv().is_err(), "nothing more is queued");
        // The link drains: everything goes, nothing is lost.
        out.budget.release(queued);
        let mut written = admitted;
        while written < frames {
            let bytes = rx.blocking_recv().unwrap();
            out.budget.release(bytes.len());
            written += 1;
        }
        pusher.join().unwrap();
        assert_eq!(out.budget.queued.lock().unwrap().0, 0);
    }
}
