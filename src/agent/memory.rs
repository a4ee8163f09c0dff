//! What the daemon does about its own memory, with glibc's allocator: one heap for every
//! thread instead of an arena per thread that ever allocated (each keeps what it freed), and
//! freed memory handed back to the kernel after the work that allocates much (a reconcile, a
//! filter change of 50,000 MACs parses megabytes that are garbage a moment later). And once
//! idle, its mappings of clean code pages dropped: its binary and libvirt's libraries are
//! most of what it maps, and a read of libvirt touches some 10 MB of code it will not run
//! again until the next one.
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

/// When the daemon has been idle for a moment after its work: releases the clean code pages
/// that work touched ([`release_clean_code`]; libvirt's client code alone is some 5-12 MB
/// after each read of libvirt).
pub fn release_idle() {
    let start = std::time::Instant::now();
    match release_clean_code() {
        Ok(r) => tracing::debug!(
            mappings = r.mappings,
            kb = r.kb,
            took_us = start.elapsed().as_micros() as u64,
            "released clean code pages"
        ),
        Err(e) => tracing::debug!(error = %e, "cannot read /proc/self/smaps"),
    }
}

/// What [`release_clean_code`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Their resident size before, in kB.
    pub kb: u64,
}

/// One mapping of `/proc/self/smaps`, with what decides whether its pages may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    rss_kb: u64,
    anonymous_kb: u64,
    locked: bool,
}

impl Mapping {
    /// A private, read-only mapping of a file whose pages are all the file's own (none copied
    /// on write, none locked): dropping our page-table entries for it loses nothing, as the
    /// next access maps the page cache's copy again. The kernel's reclaim does the same to
    /// such pages under memory pressure. A copied page is counted as anonymous; a page that
    /// smaps counts as dirty without being anonymous is the page cache's own, written by the
    /// file's writer and not yet on disk (the daemon's binary for half a minute after it is
    /// installed), and stays in the page cache just the same.
    fn clean_file_pages(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() == 4
            && p[1] != b'w'
            && p[3] == b'p'
            && self.path.starts_with('/')
            && !self.path.ends_with(" (deleted)")
            && self.rss_kb > 0
            && self.anonymous_kb == 0
            && !self.locked
    }
}

/// The mappings of a `/proc/<pid>/smaps` text.
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        if let Some(m) = header(line) {
            out.push(m);
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kb = |rest: &str| {
            rest.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        if let Some(rest) = line.strip_prefix("Rss:") {
            m.rss_kb = kb(rest);
        } else if let Some(rest) = line.strip_prefix("Anonymous:") {
            m.anonymous_kb = kb(rest);
        } else if let Some(rest) = line.strip_prefix("Locked:") {
            m.locked |= kb(rest) != 0;
        } else if let Some(rest) = line.strip_prefix("VmFlags:") {
            m.locked |= rest.split_whitespace().any(|f| f == "lo");
        }
    }
    out
}

/// A mapping's first line: `start-end perms offset dev inode [path]`. Unknown sizes are
/// taken as the largest (so that an unreadable figure never counts as clean).
fn header(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.to_owned();
    let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next().unwrap_or("").trim_start().to_owned();
    Some(Mapping {
        start,
        end,
        perms,
        path,
        rss_kb: 0,
        anonymous_kb: u64::MAX,
        locked: false,
    })
}

/// Drops this process's page-table entries for clean pages of its code and read-only data
/// (its binary and the shared libraries it maps: libvirt's alone map some 16 MB). They stay
/// in the page cache, shared with every other process mapping the same files (libvirtd maps
/// libvirt's), and come back on the next access as minor faults. What stays resident is what
/// the daemon uses between its reconciles; call it after the work that touched the rest.
///
/// A mapping read from smaps could only have been replaced before the call by unmapping a
/// library (`dlclose`): nothing in the daemon unloads one (glibc keeps its NSS and gconv
/// modules, libvirt's client loads none).
pub fn release_clean_code() -> std::io::Result<Released> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut done = Released::default();
    for m in mappings(&smaps).iter().filter(|m| m.clean_file_pages()) {
        // SAFETY: the range is one whole mapping of this process, read-only and private,
        // with no page of its own (no anonymous or locked page); MADV_DONTNEED on it
        // only unmaps page-cache pages, which the next access maps again unchanged.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            done.mappings += 1;
            done.kb += m.rss_kb;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
