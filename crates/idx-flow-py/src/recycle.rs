//! Large result buffers kept for the next call of the same size.
//!
//! A training step asks the kernels for the same large results every time
//! (a `SpatialConv` input gradient of `[8, 49152, 32]` is 50 MB). The C
//! allocator maps anything over 32 MiB anew and unmaps it when freed, so each
//! step paid for every page of it again: on the AMD 2-core box, touching a
//! fresh 50 MB from two threads took 14–16 ms and unmapping it 5–7 ms, and
//! the input gradient from Python took 29 ms where the same kernel on
//! memory already mapped takes 13–15. This module's allocator serves
//! this extension's Rust allocations (nothing else in the process): blocks
//! of at least [`MIN_BYTES`] that are freed are kept, up to [`SLOTS`] blocks
//! and a byte limit, and handed out again for a request of exactly their
//! size, as PyTorch's caching allocator does for GPU memory. The memory is
//! the process's until [`empty`] (Python: `idx_flow_rs.torch.empty_cache()`), and
//! the limit comes from `IDX_FLOW_RS_CACHE_MB` (default 2048; 0 keeps
//! nothing).
//!
//! A kept block holds the values of its last use: the kernels that ask for
//! large buffers write every element before anything reads it, and zeroed
//! requests (`alloc_zeroed`) always go to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Blocks from this size on are kept when freed.
pub(crate) const MIN_BYTES: usize = 4 << 20;
/// At most this many blocks are kept.
const SLOTS: usize = 8;
/// The default limit on the bytes kept, in MiB.
pub(crate) const DEFAULT_LIMIT_MB: usize = 2048;

/// The bytes the kept blocks may hold together.
static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT_MB << 20);

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    layout: Layout,
    /// When it was kept: the oldest goes first.
    age: u64,
}

struct Kept {
    blocks: [Option<Block>; SLOTS],
    bytes: usize,
    clock: u64,
}

// SAFETY: the pointers are allocations no one else refers to while kept;
// they move between threads only under the mutex.
unsafe impl Send for Kept {}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    blocks: [None; SLOTS],
    bytes: 0,
    clock: 0,
});

/// Nothing panics while holding the lock, but a poisoned one is still sound.
fn kept() -> MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kept {
    /// The newest kept block of exactly `layout`, taken out.
    fn take(&mut self, layout: Layout) -> Option<*mut u8> {
        let slot = self
            .blocks
            .iter_mut()
            .filter(|b| b.is_some_and(|b| b.layout == layout))
            .max_by_key(|b| b.map_or(0, |b| b.age))?;
        let block = slot.take()?;
        self.bytes -= block.layout.size();
        Some(block.ptr)
    }

    /// The oldest kept block, taken out.
    fn take_oldest(&mut self) -> Option<Block> {
        let block = self
            .blocks
            .iter_mut()
            .filter(|b| b.is_some())
            .min_by_key(|b| b.map_or(u64::MAX, |b| b.age))?
            .take()?;
        self.bytes -= block.layout.size();
        Some(block)
    }

    /// Keeps `ptr`, freeing the oldest blocks as room is needed: returns the
    /// blocks the caller must free (outside the lock), `ptr` itself among
    /// them when it alone is over the limit.
    fn keep(&mut self, ptr: *mut u8, layout: Layout, limit: usize) -> Evicted {
        let mut out = Evicted::default();
        if layout.size() > limit {
            out.push(ptr, layout);
            return out;
        }
        while self.blocks.iter().all(Option::is_some) || self.bytes + layout.size() > limit {
            let Some(b) = self.take_oldest() else { break };
            out.push(b.ptr, b.layout);
        }
        self.clock += 1;
        let free = self.blocks.iter_mut().find(|b| b.is_none());
        match free {
            Some(slot) => {
                *slot = Some(Block {
                    ptr,
                    layout,
                    age: self.clock,
                });
                self.bytes += layout.size();
            }
            None => out.push(ptr, layout),
        }
        out
    }
}

/// Blocks to hand back to the system allocator, at most one more than the
/// slots (a fixed array: the allocator must not allocate).
#[derive(Default)]
struct Evicted {
    blocks: [Option<(*mut u8, Layout)>; SLOTS + 1],
    len: usize,
}

impl Evicted {
    fn push(&mut self, ptr: *mut u8, layout: Layout) {
        self.blocks[self.len] = Some((ptr, layout));
        self.len += 1;
    }

    /// Frees every block.
    ///
    /// # Safety
    /// Each block must be a live allocation of the system allocator with its
    /// layout, owned by no one else.
    unsafe fn free(self) {
        for (ptr, layout) in self.blocks.into_iter().flatten() {
            // SAFETY: forwarded from the caller.
            unsafe { System.dealloc(ptr, layout) };
        }
    }
}

/// The system allocator, keeping large freed blocks for the next request of
/// their size.
pub struct RecyclingAllocator;

// SAFETY: every block comes from `System` and goes back to it; a kept block
// is owned by the table alone until it is handed out again for a layout
// equal to the one it was allocated with.
unsafe impl GlobalAlloc for RecyclingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BYTES
            && let Some(ptr) = kept().take(layout)
        {
            return ptr;
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BYTES {
            let limit = LIMIT_BYTES.load(Ordering::Relaxed);
            let evicted = kept().keep(ptr, layout, limit);
            // SAFETY: the evicted blocks left the table (or were never in
            // it), so they are owned here alone.
            unsafe { evicted.free() };
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Fresh zero pages cost less than clearing a kept block.
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Every block, kept or not, is the system allocator's.
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Sets the limit on the bytes kept. Called once, when the module loads
/// (from `IDX_FLOW_RS_CACHE_MB`), before anything is kept; blocks kept later
/// are held to it by [`Kept::keep`].
pub(crate) fn set_limit(bytes: usize) {
    LIMIT_BYTES.store(bytes, Ordering::Relaxed);
}

/// Frees every kept block; returns the bytes given back.
pub(crate) fn empty() -> usize {
    let mut evicted = Evicted::default();
    let bytes = {
        let mut k = kept();
        let bytes = k.bytes;
        while let Some(b) = k.take_oldest() {
            evicted.push(b.ptr, b.layout);
        }
        bytes
    };
    // SAFETY: the blocks left the table under the lock.
    unsafe { evicted.free() };
    bytes
}

/// The bytes kept now.
pub(crate) fn kept_bytes() -> usize {
    kept().bytes
}
