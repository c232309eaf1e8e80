//! The agent's record path, once warm, allocates nothing per batch (issue
//! 11): a batch is encoded once at ingress into reused blocks, the
//! supervisor hands the same bytes to both instances and keeps them for
//! replay, each instance's output comes back through a decoder that fills
//! buffers the downstream junction handed back, and the merged output goes
//! to the sinks in the batch's own buffer.
//!
//! Both instances serve (blue cold-started, green restored from blue's
//! snapshot), as under `tandem up`; the instances are played here by their
//! codec alone (decode the input, make one output record per input record,
//! encode it), with no network, so what is counted is the core's path.
//! Allocations are counted by this test binary's global allocator, on the
//! test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use tandem_core::ha::{Color, HaConfig, Nanos, Role, Supervisor, ToAgent, ToInstance, Transmit};
use tandem_core::wire::{
    BatchEncoder, BatchKind, StreamDecoder, BATCH_PREFIX, BLOCK_BYTES, MAX_FRAME_LEN,
};
use tandem_core::{ChannelId, EventTime, Record, Seq};

/// Counts the allocations and reallocations of each thread, so that what
/// the test measures is its own thread's, whatever else runs.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// One more allocation on this thread. (A constant thread-local without a
/// destructor allocates nothing and is there for the thread's whole life.)
fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW: Nanos = Nanos(0);
/// Records per ingress batch, as `tandem up --batch` sets.
const BATCH: usize = 1024;

/// One instance, played by its codec: input frames in, output frames out.
struct Instance {
    color: Color,
    input: StreamDecoder<ToInstance>,
    output: BatchEncoder,
    made: Vec<Record>,
    /// Inputs processed, for heartbeats.
    processed: Seq,
}

impl Instance {
    fn new(color: Color) -> Instance {
        Instance {
            color,
            input: StreamDecoder::new(MAX_FRAME_LEN),
            output: BatchEncoder::new(BatchKind::Output, BATCH),
            made: Vec::with_capacity(BATCH),
            processed: Seq::ZERO,
        }
    }

    /// Takes one frame the agent wrote; the output frames it makes.
    fn take(&mut self, mut frame: Bytes, to_agent: &mut Vec<Bytes>) {
        while let Some(msg) = self.input.decode(&mut frame).expect("a valid frame") {
            match msg {
                ToInstance::Input { frontier, records } => {
                    self.made.clear();
                    self.made.extend(
                        records
                            .iter()
                            .map(|r| r.derive(ChannelId(1), r.value * 2.0)),
                    );
                    self.processed = self.processed.max(frontier);
                    self.input.give(records);
                    self.output.push(&self.made);
                    self.output.finish(frontier);
                    while let Some(batch) = self.output.poll() {
                        to_agent.push(batch.bytes().clone());
                    }
                }
                ToInstance::SnapshotRequest { barrier } => {
                    for msg in [
                        ToAgent::SnapshotChunk {
                            barrier,
                            vertex: 0,
                            offset: 0,
                            total: 1,
                            bytes: Bytes::from_static(&[1]),
                        },
                        ToAgent::SnapshotEnd {
                            barrier,
                            vertices: 1,
                            state_hash: 7,
                        },
                    ] {
                        to_agent.push(encode(&msg));
                    }
                }
                ToInstance::SnapshotEnd { barrier, .. } => {
                    let restored = ToAgent::Restored {
                        barrier,
                        state_hash: 7,
                    };
                    to_agent.push(encode(&restored));
                }
                _ => {}
            }
        }
    }

    fn heartbeat(&self) -> ToAgent {
        ToAgent::Heartbeat {
            sent_ns: 0,
            seq: 0,
            processed: self.processed,
        }
    }
}

fn encode<M: tandem_core::wire::Message>(msg: &M) -> Bytes {
    tandem_core::wire::encode_to_bytes(msg).expect("a message under the cap")
}

/// The agent's side: the supervisor, the ingress encoder, a decoder per link.
struct Agent {
    sup: Supervisor,
    ingress: BatchEncoder,
    links: [StreamDecoder<ToAgent>; 2],
    instances: [Instance; 2],
    next: u64,
    input: Vec<Record>,
    /// What went to the sinks, in order of seq.
    emitted: Vec<Record>,
    sunk: u64,
    frames: Vec<Bytes>,
}

impl Agent {
    fn new() -> Agent {
        Agent {
            sup: Supervisor::new(HaConfig::default()),
            ingress: BatchEncoder::new(BatchKind::Input, BATCH),
            links: [
                StreamDecoder::new(MAX_FRAME_LEN),
                StreamDecoder::new(MAX_FRAME_LEN),
            ],
            instances: [Instance::new(Color::Blue), Instance::new(Color::Green)],
            next: 0,
            input: Vec::with_capacity(BATCH),
            emitted: Vec::with_capacity(BATCH),
            sunk: 0,
            frames: Vec::with_capacity(16),
        }
    }

    fn hello(&mut self, color: Color) {
        let hello = ToAgent::Hello {
            color,
            version: 1,
            pid: 1,
        };
        self.sup.handle_message(NOW, color, hello);
        self.pump();
    }

    /// One ingress batch, all the way to the sinks.
    fn batch(&mut self) {
        self.input.clear();
        for _ in 0..BATCH {
            self.next += 1;
            let value = (self.next % 1000) as f64;
            self.input.push(Record::new(
                Seq(self.next),
                EventTime(self.next as i64),
                ChannelId(0),
                value,
            ));
        }
        self.ingress.push(&self.input);
        self.ingress.finish(Seq(self.next));
        while let Some(batch) = self.ingress.poll() {
            self.sup.handle_input(NOW, batch);
        }
        self.pump();
    }

    /// Delivers what the supervisor has for the instances and what they
    /// answer, until nothing moves; emits to the "sinks".
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for color in Color::BOTH {
                while let Some(frame) = self.sup.poll_transmit_frame(color) {
                    self.deliver(color, frame);
                    moved = true;
                }
            }
            while let Some((to, frame)) = self.sup.poll_input_frame() {
                for color in to.iter() {
                    self.deliver(color, frame.clone());
                }
                moved = true;
            }
            for color in Color::BOTH {
                let heartbeat = self.instances[color.index()].heartbeat();
                self.sup.handle_message(NOW, color, heartbeat);
            }
            self.sup.poll_emitted(&mut self.emitted);
            self.sunk += self.emitted.len() as u64;
            self.emitted.clear();
            while self.sup.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn deliver(&mut self, color: Color, frame: Transmit) {
        let bytes = match frame {
            Transmit::Encoded(bytes) => bytes,
            Transmit::Message(msg) => encode(&msg),
        };
        let instance = &mut self.instances[color.index()];
        debug_assert_eq!(instance.color, color);
        self.frames.clear();
        instance.take(bytes, &mut self.frames);
        for mut frame in self.frames.drain(..) {
            let link = &mut self.links[color.index()];
            while let Some(spare) = self.sup.take_spare_buffer() {
                link.give(spare);
            }
            while let Some(msg) = link.decode(&mut frame).expect("a valid frame") {
                self.sup.handle_message(NOW, color, msg);
            }
        }
    }
}

#[test]
fn a_warm_agent_allocates_nothing_per_batch() {
    let mut agent = Agent::new();
    agent.hello(Color::Blue);
    agent.batch();
    agent.hello(Color::Green);
    for _ in 0..8 {
        agent.batch();
    }
    for color in Color::BOTH {
        assert_eq!(agent.sup.role(color), Some(Role::Serving), "{color}");
    }
    // Warm: the retention ring full and evicting, every buffer made once.
    let retention = HaConfig::default().upstream.retention;
    for _ in 0..(2 * retention / BATCH + 16) {
        agent.batch();
    }
    let sunk = agent.sunk;
    let before = allocations();
    let batches = 1000u64;
    for _ in 0..batches {
        agent.batch();
    }
    let made = allocations() - before;
    // Everything got through, once: each input record made one output.
    assert_eq!(agent.sunk - sunk, batches * BATCH as u64);
    // What is left is the ingress encoder's blocks: the retention ring
    // still holds frames of the blocks before, so each block of frames is a
    // new one, with the small header `bytes` shares it through. Per block
    // of frames, not per batch; everything else reuses its buffers.
    let frames_per_block = (BLOCK_BYTES / (BATCH_PREFIX + BATCH * 32)) as u64;
    let blocks = batches.div_ceil(frames_per_block);
    println!(
        "{made} allocations over {batches} batches of {BATCH} records ({blocks} blocks of frames)"
    );
    assert!(
        made <= 2 * blocks + 4,
        "{made} allocations over {batches} batches ({blocks} blocks of frames): something allocates per batch"
    );
}
