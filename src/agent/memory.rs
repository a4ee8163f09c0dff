//! What the daemon does about its own memory, with glibc's allocator: one heap for every
//! thread instead of an arena per thread that ever allocated (each keeps what it freed), and
//! freed memory handed back to the kernel after the work that allocates much (a reconcile, a
//! filter change of 50,000 MACs parses megabytes that are garbage a moment later).
//!
//! The daemon's threads are the event loop and a few short-lived blocking workers: they never
//! contend for the allocator enough for per-thread arenas to pay for their memory.

/// Limits glibc to one malloc arena. Call before any thread but the first allocates.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the heap's free pages to the kernel (glibc keeps them otherwise).
pub fn release_free() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim walks the allocator's own free lists under its locks; no pointer of
    // ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
