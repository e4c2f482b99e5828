//! --max-repo-size: the bytes of a pack counted as gix receives it, and the fetch stopped as
//! soon as the store would grow past the limit, before the pack is indexed or anything checked
//! out.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use gix::progress::{prodash::messages::MessageLevel, Count, Id, NestedProgress, Progress};
use gix::progress::{StepShared, Unit};

/// gix-pack's id for the progress that counts the bytes of the pack it reads
/// (`gix_pack::bundle::write::ProgressId::ReadPackBytes`).
const READ_PACK_BYTES: Id = *b"BWRB";

/// The size of the packs already in the store: the fetch may add up to the limit minus this.
pub(super) fn packs_size(store: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(store.join("objects/pack")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

struct Shared {
    /// Bytes the pack may still have.
    budget: u64,
    received: AtomicU64,
    exceeded: AtomicBool,
    /// What gix polls as its `should_interrupt`: set when the budget is spent, and when the
    /// caller's own flag or a signal asks the fetch to stop.
    stop: AtomicBool,
    outer: Option<Arc<AtomicBool>>,
}

/// A progress sink for `receive()` that keeps only the byte count of the pack.
#[derive(Clone)]
pub(super) struct SizeWatch {
    shared: Arc<Shared>,
    counts: bool,
}

impl SizeWatch {
    pub(super) fn new(budget: u64, outer: Option<Arc<AtomicBool>>) -> SizeWatch {
        SizeWatch {
            shared: Arc::new(Shared {
                budget,
                received: AtomicU64::new(0),
                exceeded: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                outer,
            }),
            counts: false,
        }
    }

    /// The flag to hand gix as `should_interrupt`.
    pub(super) fn interrupt(&self) -> &AtomicBool {
        &self.shared.stop
    }

    /// Whether the fetch was stopped because the pack outgrew the budget.
    pub(super) fn exceeded(&self) -> bool {
        self.shared.exceeded.load(Ordering::Relaxed)
    }

    /// Pass a stop asked for elsewhere on to gix: every progress call looks, and gix calls one
    /// for every read and every object it indexes.
    fn poll(&self) {
        let shared = &self.shared;
        let asked = crate::signals::interrupt_flag().load(Ordering::Relaxed)
            || shared
                .outer
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed));
        if asked {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Count for SizeWatch {
    fn set(&self, _step: usize) {
        self.poll();
    }

    fn step(&self) -> usize {
        0
    }

    fn inc_by(&self, step: usize) {
        if self.counts {
            let shared = &self.shared;
            let total = shared.received.fetch_add(step as u64, Ordering::Relaxed) + step as u64;
            if total > shared.budget {
                shared.exceeded.store(true, Ordering::Relaxed);
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
        self.poll();
    }

    fn counter(&self) -> StepShared {
        Arc::new(AtomicUsize::default())
    }
}

impl Progress for SizeWatch {
    fn init(&mut self, _max: Option<usize>, _unit: Option<Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> Id {
        gix::progress::UNKNOWN
    }

    fn message(&self, _level: MessageLevel, _message: String) {}
}

impl NestedProgress for SizeWatch {
    type SubProgress = SizeWatch;

    fn add_child(&mut self, _name: impl Into<String>) -> SizeWatch {
        SizeWatch {
            shared: self.shared.clone(),
            counts: false,
        }
    }

    fn add_child_with_id(&mut self, _name: impl Into<String>, id: Id) -> SizeWatch {
        SizeWatch {
            shared: self.shared.clone(),
            counts: id == READ_PACK_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pack_bytes_count_and_a_stop_from_outside_reaches_gix() {
        let mut root = SizeWatch::new(100, None);
        let other = root.add_child("resolving");
        let mut pack = root.add_child_with_id("read pack", READ_PACK_BYTES);
        other.inc_by(1000);
        assert!(!root.exceeded() && !root.interrupt().load(Ordering::Relaxed));
        pack.inc_by(100);
        assert!(!root.exceeded(), "at the limit is within it");
        pack.init(None, None);
        pack.inc_by(1);
        assert!(root.exceeded() && root.interrupt().load(Ordering::Relaxed));

        let outer = Arc::new(AtomicBool::new(false));
        let root = SizeWatch::new(u64::MAX, Some(outer.clone()));
        root.inc_by(1);
        assert!(!root.interrupt().load(Ordering::Relaxed));
        outer.store(true, Ordering::Relaxed);
        root.set(3);
        assert!(root.interrupt().load(Ordering::Relaxed) && !root.exceeded());
    }
}
