//! The global allocator: mimalloc, asked for an alignment only when `mi_malloc`'s own does not
//! already give it.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to `mi_malloc_aligned`. In mimalloc 3
//! that is a detour for most of what pingora allocates: a block over 1 KiB, or one whose small
//! page is empty, goes through `mi_theap_malloc_zero_aligned_at_generic`, and a block whose size
//! class is not a power of two (pingora's 13.7 KB request future, for one) is over-allocated by
//! its alignment and marked as holding interior pointers, which every later `mi_free` of its page
//! then pays for (docs/performance-decisions.md). Rust's own `System` allocator makes the same
//! choice as [`Mimalloc`] for glibc's `malloc`.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment `mi_malloc` gives every block of at least that many bytes (mimalloc's
/// `MI_MAX_ALIGN_SIZE`, `alignof(max_align_t)` on x86-64 and aarch64); a smaller block is aligned
/// to its size rounded up to a power of two, as its size class is.
const MALLOC_ALIGN: usize = 16;

/// Whether a block of `size` bytes from plain `mi_malloc` is aligned to `align`.
fn malloc_aligns(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

/// mimalloc, through `mi_malloc` / `mi_zalloc` / `mi_realloc` where their alignment suffices.
pub struct Mimalloc;

// SAFETY: every function hands the layout to mimalloc, whose blocks satisfy it: the plain calls
// only where `malloc_aligns` says their alignment covers it, the `_aligned` calls otherwise.
// `mi_free` frees blocks from either.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if malloc_aligns(layout.size(), layout.align()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if malloc_aligns(layout.size(), layout.align()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if malloc_aligns(new_size, layout.align()) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 20 KiB (past mimalloc's small and medium classes) with every alignment
    /// up to 4 KiB, alive at the same time so blocks come from the middle of their pages too.
    #[test]
    fn every_block_has_the_alignment_its_layout_asks_for() {
        let a = Mimalloc;
        for align in (0..=12).map(|s| 1usize << s) {
            let mut blocks = Vec::new();
            for size in (1..=20 * 1024)
                .step_by(7)
                .chain([8, 16, 24, 48, 1024, 1025, 13_712, 14_336])
            {
                let layout = Layout::from_size_align(size, align).unwrap();
                for zeroed in [false, true] {
                    // SAFETY: a non-zero size; the block is freed below with the same layout.
                    let p = unsafe {
                        if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    if zeroed {
                        // SAFETY: p points at `size` bytes that alloc_zeroed returned.
                        assert!(unsafe { std::slice::from_raw_parts(p, size) }.iter().all(|&b| b == 0));
                    }
                    blocks.push((p, layout));
                }
            }
            for (p, layout) in blocks {
                // SAFETY: p came from `a` with this layout and is freed once.
                unsafe { a.dealloc(p, layout) };
            }
        }
    }

    #[test]
    fn a_grown_or_shrunk_block_keeps_its_bytes_and_alignment() {
        let a = Mimalloc;
        for align in [1, 8, 16, 64, 4096] {
            let layout = Layout::from_size_align(40, align).unwrap();
            // SAFETY: non-zero size; the block is reallocated and freed with matching layouts.
            unsafe {
                let p = a.alloc(layout);
                for i in 0..40 {
                    *p.add(i) = i as u8;
                }
                let mut cur = (p, layout);
                for new_size in [3, 17, 5_000, 70_000, 12] {
                    let q = a.realloc(cur.0, cur.1, new_size);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc to {new_size}, align {align}");
                    let kept = cur.1.size().min(new_size).min(3);
                    for i in 0..kept {
                        assert_eq!(*q.add(i), i as u8);
                    }
                    cur = (q, Layout::from_size_align(new_size, align).unwrap());
                }
                a.dealloc(cur.0, cur.1);
            }
        }
    }
}
