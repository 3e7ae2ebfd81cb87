//! Heap accounting for `idx-flow bench`: the global allocator counts live
//! bytes and their peak, so each path's peak memory on the CPU is measured
//! rather than read off the process's resident size.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc as System;
use std::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (mimalloc.h), in the library the mimalloc
    /// crate links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc's option enum (the same in its v2 and
/// v3 sources, as bundled by libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps the pages of freed memory instead of handing them back to the OS
/// after mimalloc's purge delay, unless `MIMALLOC_PURGE_DELAY` says
/// otherwise. A training loop frees and allocates the same tensors every
/// step; handed back, their pages are faulted in and zeroed by the kernel
/// again each time (32 210 page faults in 60 steps of `idx-flow train`,
/// 2 131 with the pages kept). On the 2-core dev box, ten alternated pairs
/// of 150-step training runs took 9 % less time with the pages kept (the
/// last three: 14.1 s against 15.6 s on average), and the `bench conv`
/// step with `--input-grad` 46.9–50.9 ms against 47.3–55.6 ms. The process
/// keeps its high-water mark resident, which it reaches every step anyway.
pub fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain option store in mimalloc, valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// mimalloc, counting.
pub struct CountingAllocator;

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to mimalloc unchanged; the counters
// are only statistics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Starts a new peak from the bytes live now.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The most bytes live at once since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The process's peak resident memory (`VmHWM` of `/proc/self/status`) in
/// bytes, where the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// [`peak_rss_bytes`] as text: `812 MB RSS`, or `unknown`.
pub fn peak_rss_text() -> String {
    peak_rss_bytes().map_or_else(
        || "unknown".into(),
        |b| format!("{:.0} MB RSS", b as f64 / 1e6),
    )
}
