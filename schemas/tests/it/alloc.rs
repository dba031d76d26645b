//! A counting global allocator: the largest single allocation made on the current thread
//! since [`track`] started, so a property can bound what a decoder asked for.

// The only unsafe code of the test binary: a pass-through to the system allocator is how
// a Rust program observes its own allocations.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` thread locals need no lazy initialisation, so reading them inside the
    // allocator cannot allocate.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down has no locals left; its allocations are not ours.
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it made (bytes).
pub fn track<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ACTIVE.with(|a| a.set(true));
    let out = f();
    ACTIVE.with(|a| a.set(false));
    (out, LARGEST.with(Cell::get))
}

#[test]
fn tracking_sees_a_large_allocation() {
    let (v, largest) = track(|| Vec::<u8>::with_capacity(1 << 20));
    assert!(largest >= 1 << 20, "{largest}");
    drop(v);
    let ((), largest) = track(|| ());
    assert_eq!(largest, 0);
}
