//! The instance's checkpoint writer: a thread of its own writes barrier
//! snapshots to disk, so the control thread, which feeds the topology its
//! input, never waits for an fsync. Both instances take their snapshot at
//! the same barrier; with the write on the control thread, both stopped
//! for its fsync at once and the merged output went silent for about a
//! millisecond at every checkpoint.
//!
//! Only the newest checkpoint waiting is written: one that a newer barrier
//! overtakes while the disk is slow is skipped, as the newer one replaces
//! it anyway. The writer finishes what waits before the instance exits, so
//! the last checkpoint of a drained stop is on disk.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use tandem_core::Seq;

use crate::checkpoint::{CheckpointStore, Storage};

/// What waits for the writer.
#[derive(Default)]
struct Slot {
    /// The newest checkpoint image not yet written, and its sequence number.
    next: Option<(Seq, Bytes)>,
    /// No more come: write what waits, then end.
    closed: bool,
    /// Images skipped because a newer one came first.
    skipped: u64,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

/// Hands checkpoint images to the writer thread; ends it when dropped.
pub(super) struct Saver {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    /// Starts the writer thread, which owns `store`.
    pub(super) fn start<S: Storage + Send + 'static>(
        store: CheckpointStore<S>,
    ) -> std::io::Result<Saver> {
        let shared: Shared = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-checkpoint".into())
            .spawn(move || write_until_closed(store, &theirs))?;
        Ok(Saver {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `image` (a checkpoint at `seq`, encoded) to be written,
    /// in place of one still waiting.
    pub(super) fn save(&self, seq: Seq, image: Bytes) {
        let (slot, wake) = &*self.shared;
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.next.replace((seq, image)).is_some() {
            slot.skipped += 1;
        }
        wake.notify_one();
    }

    /// Checkpoints skipped so far because a newer one came first.
    #[cfg(test)]
    fn skipped(&self) -> u64 {
        let (slot, _) = &*self.shared;
        slot.lock().unwrap_or_else(PoisonError::into_inner).skipped
    }
}

impl Drop for Saver {
    /// Writes what waits, then ends the thread.
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        slot.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_until_closed<S: Storage>(mut store: CheckpointStore<S>, shared: &Shared) {
    let (slot, wake) = &**shared;
    loop {
        let (seq, image) = {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(next) = slot.next.take() {
                    break next;
                }
                if slot.closed {
                    return;
                }
                slot = wake.wait(slot).unwrap_or_else(PoisonError::into_inner);
            }
        };
        if let Err(e) = store.save_image(seq, &image) {
            tracing::warn!("checkpoint not saved: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::checkpoint::sim::SimDisk;
    use crate::checkpoint::{format, Checkpoint, GraphStamp};
    use std::collections::BTreeMap;
    use std::io;
    use std::path::Path;

    fn image(seq: u64) -> Bytes {
        Bytes::from(format::encode(&Checkpoint {
            graph: GraphStamp {
                name: "saver".into(),
                hash: 7,
            },
            seq: Seq(seq),
            vertices: BTreeMap::new(),
        }))
    }

    /// A simulated disk whose fsyncs wait for the test, shared with it.
    #[derive(Clone)]
    struct SlowDisk {
        disk: Arc<Mutex<SimDisk>>,
        /// Each fsync of a file takes one token, and says so first.
        tokens: crossbeam_channel::Receiver<()>,
        syncing: crossbeam_channel::Sender<()>,
    }

    impl Storage for SlowDisk {
        fn create(&mut self, path: &Path) -> io::Result<()> {
            self.disk.lock().unwrap().create(path)
        }
        fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            self.disk.lock().unwrap().write(path, bytes)
        }
        fn sync_file(&mut self, path: &Path) -> io::Result<()> {
            let _ = self.syncing.send(());
            let _ = self.tokens.recv();
            self.disk.lock().unwrap().sync_file(path)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.disk.lock().unwrap().rename(from, to)
        }
        fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
            self.disk.lock().unwrap().sync_dir(dir)
        }
        fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
            self.disk.lock().unwrap().list(dir)
        }
        fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
            self.disk.lock().unwrap().read(path)
        }
        fn remove(&mut self, path: &Path) -> io::Result<()> {
            self.disk.lock().unwrap().remove(path)
        }
    }

    #[test]
    fn a_slow_disk_never_holds_the_caller_and_the_newest_checkpoint_is_written() {
        let (give, tokens) = crossbeam_channel::unbounded();
        let (syncing, synced) = crossbeam_channel::unbounded();
        let disk = SlowDisk {
            disk: Arc::default(),
            tokens,
            syncing,
        };
        let saver = Saver::start(CheckpointStore::with_storage("state", disk.clone())).unwrap();
        saver.save(Seq(1), image(1));
        // The writer is inside checkpoint 1's fsync: the caller is not.
        synced
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        for seq in 2..=5 {
            saver.save(Seq(seq), image(seq));
        }
        assert_eq!(
            saver.skipped(),
            3,
            "2, 3 and 4 are overtaken while 1 is written"
        );
        for _ in 0..2 {
            give.send(()).unwrap();
        }
        drop(saver);
        let mut store = CheckpointStore::with_storage("state", disk.clone());
        let written: Vec<Seq> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
        assert!(
            written.contains(&Seq(1)) && written.contains(&Seq(5)),
            "on disk: {written:?}"
        );
        assert!(
            !written.iter().any(|s| (2..=4).contains(&s.0)),
            "on disk: {written:?}"
        );
        let newest = store.load_latest().unwrap();
        assert_eq!(newest.checkpoint().map(|c| c.seq), Some(Seq(5)));
    }
}
