//! The operator's heap on glibc. Two settings keep its resident memory near what it uses:
//! - one arena for all threads ([`share_one_arena`]): with an arena per thread, each keeps its own
//!   free memory. Three rounds of 500 runs in one process peaked at 48.2, 58.0, 70.0 MiB and
//!   52.2, 54.8, 63.8 MiB with one arena, against 54.0, 62.0, 73.1 and 51.2, 59.1, 69.9 MiB with
//!   one per thread (two pairs of runs); lateness and the operator's CPU stayed within the noise;
//! - free pages handed back after a large list ([`release_free_heap`]): with 5,500 finished
//!   scenarios in the namespace the idle operator held 16.8 MiB without it and 14.8 MiB with it
//!   (13.8 MiB with none), the rest of what the list freed being pinned by allocations made
//!   meanwhile.
//!
//! Tried and not kept (five rounds of 500 shared-boundary runs in one process, peak RSS per round
//! 46.0, 53.9, 59.5, 63.3, 69.1 MiB as it is): mimalloc as the global allocator, 69.3, 76.6, 80.5,
//! 90.4, 92.6 MiB (22.8 idle against 13.7), for a fifth less CPU; handing free pages back each time
//! the last running scenario ended, 46.0, 53.4, 58.8, 63.2, 66.7 MiB. About half of the growth
//! from round to round is the finished runs' metric series (`--finished-series-kept`; with 5 s,
//! 46.4, 50.5, 52.9, 55.1, 58.5 MiB). The rest is not live data: under heaptrack (5 s) the heap
//! peaked at 33.8 MB over the five rounds, while RSS (heaptrack's own included) reached 63 MiB.
//!
//! Elsewhere (another allocator) both are no-ops.

/// Before any thread starts: all threads allocate from one arena, unless `MALLOC_ARENA_MAX` sets
/// the number (glibc reads it itself).
pub fn share_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes no pointers; it runs before the runtime's threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns free heap pages to the system.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
