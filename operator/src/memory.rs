//! Gives the heap's free pages back to the system after a large list (the start-up sweep, the
//! first list of each watch). glibc keeps what such a burst freed inside the arenas, pinned by the
//! few allocations made meanwhile that outlive it. With 5,500 finished scenarios in the namespace
//! the idle operator held 16.8 MiB without this and 14.8 MiB with it (13.8 MiB with none).

/// Returns free heap pages to the system; a no-op where the allocator is not glibc's.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
