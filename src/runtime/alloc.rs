//! A global allocator that maps very large allocations with `MAP_NORESERVE`.
//!
//! The protocol codec sizes a vector by the element count a request claims before it has
//! read the elements. A hostile count can ask for hundreds of gigabytes; glibc's malloc then
//! fails under the kernel's overcommit heuristic and Rust aborts the process. Mapped with
//! `MAP_NORESERVE`, the same request succeeds without touching memory, the decoder fails on
//! the missing elements a few bytes later, and the mapping is returned. Ordinary allocations
//! go to the system allocator untouched.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped directly.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct HugeAwareAllocator;

/// Installed for every binary that links the crate: the broker, the CLI and the tests.
#[global_allocator]
static ALLOCATOR: HugeAwareAllocator = HugeAwareAllocator;

unsafe impl GlobalAlloc for HugeAwareAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= PAGE {
            return map_noreserve(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= PAGE {
            // Anonymous mappings are zero-filled.
            return map_noreserve(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE && layout.align() <= PAGE {
            libc::munmap(ptr.cast(), layout.size());
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small_before = layout.size() < HUGE || layout.align() > PAGE;
        let small_after = new_size < HUGE || layout.align() > PAGE;
        if small_before && small_after {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new_ptr = self.alloc(new_layout);
        if !new_ptr.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new_ptr
    }
}

unsafe fn map_noreserve(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocation_is_mapped_without_reserving_memory() {
        let a = HugeAwareAllocator;
        // 256 GiB: more than this machine has, as a hostile element count would ask.
        let layout = Layout::from_size_align(256 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }
}
