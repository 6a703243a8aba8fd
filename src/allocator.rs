//! The process's allocator: glibc's for `convert`, mimalloc for the commands that query.
//!
//! A query over a lake of small files allocates and frees, from several threads, the buffers, schemas and decoders
//! of every file it opens; glibc's allocator spent a fifth of such a run consolidating and searching its free
//! lists. mimalloc took a third off the Sigma benchmark over the wide lake (1.12 s to 0.74 s). It is not used for
//! `convert`: it keeps freed memory for reuse, and converting one large file at `--memory-limit 16MiB` peaked at
//! 215 MB with it, where the promise is the limit plus 160 MB (glibc: 57 MB).
//!
//! The choice is made after the arguments are read, when some memory is already allocated, so every block is freed
//! by the allocator that gave it: mimalloc knows its own blocks (`mi_is_in_heap_region`, a look-up in its segment
//! map), and any other came from glibc.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use libmimalloc_sys as mi;

/// Whether new blocks come from mimalloc.
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// mimalloc's `mi_option_arena_eager_commit` (the fifth of `mi_option_e` in its `mimalloc.h`; the crate names
/// no constant for it).
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;

/// Makes mimalloc give the blocks allocated from now on.
///
/// Its arenas are committed as pages are used, not whole when reserved: the Sigma benchmark's peak memory went
/// from 470 MB to 260 MB on the narrow lake (glibc: 190 MB) and from 290 MB to 230 MB on the wide one (glibc:
/// 185 MB), for 2-4% of the time.
pub fn use_mimalloc() {
    // SAFETY: setting an option takes no pointer; it is read when mimalloc first reserves an arena.
    unsafe { mi::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    MIMALLOC.store(true, Ordering::Relaxed);
}

/// glibc's allocator or mimalloc, as [`use_mimalloc`] chose; each block goes back to the one it came from.
pub struct Allocator;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// Whether the block is mimalloc's. Until [`use_mimalloc`] there is none, and the look-up is skipped (`convert`
/// frees every block without it): the switch is made once, before the threads that could free such a block.
fn mimalloc_owns(ptr: *mut u8) -> bool {
    // SAFETY: the look-up only reads mimalloc's maps of its own memory, for any address.
    MIMALLOC.load(Ordering::Relaxed) && unsafe { mi::mi_is_in_heap_region(ptr as *const c_void) }
}

// SAFETY: each method hands the request to one of two allocators that implement `GlobalAlloc`'s contract, and a
// block is freed or resized only by the allocator that holds it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            // SAFETY: a valid layout, as `alloc` is given.
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            // SAFETY: as in `alloc`.
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mimalloc_owns(ptr) {
            // SAFETY: a live block of mimalloc's.
            unsafe { mi::mi_free(ptr as *mut c_void) }
        } else {
            // SAFETY: a live block of glibc's, of this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if mimalloc_owns(ptr) {
            // SAFETY: a live block of mimalloc's, kept at its alignment.
            unsafe { mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
        } else {
            // SAFETY: a live block of glibc's, of this layout.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks from either allocator live side by side, and each is resized and freed by its own: those allocated
    /// before the switch stay glibc's, those after are mimalloc's.
    #[test]
    fn each_block_goes_back_to_its_own_allocator() {
        let before: Vec<Vec<u64>> = (0..100).map(|i| vec![i; 1 + i as usize * 37]).collect();
        assert!(before.iter().all(|v| !mimalloc_owns(v.as_ptr() as *mut u8)));
        use_mimalloc();
        let after: Vec<Vec<u64>> = (0..100).map(|i| vec![i; 1 + i as usize * 37]).collect();
        assert!(after.iter().all(|v| mimalloc_owns(v.as_ptr() as *mut u8)));
        let aligned = Layout::from_size_align(3000, 4096).unwrap();
        // SAFETY: a valid layout; the block is freed below, with it.
        let block = unsafe { ALLOCATOR.alloc(aligned) };
        assert!(!block.is_null() && (block as usize).is_multiple_of(4096) && mimalloc_owns(block));
        // SAFETY: the block just allocated, with its layout.
        unsafe { ALLOCATOR.dealloc(block, aligned) };
        for (mut old, new) in before.into_iter().zip(after) {
            // Grown by each allocator in place or moved, within it.
            old.extend_from_slice(&new);
            assert!(!mimalloc_owns(old.as_ptr() as *mut u8));
            assert_eq!(old.len(), 2 * new.len());
        }
    }
}
