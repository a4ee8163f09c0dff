use std::io::Write;

use super::*;

const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00001000 fd:01 1234                       /usr/sbin/virtmasq
Rss:                 400 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
Locked:                0 kB
VmFlags: rd ex mr mw me
55d0c0100000-55d0c0200000 r--p 00101000 fd:01 1234                       /usr/lib/libvirt.so.0
Rss:                  64 kB
Anonymous:            12 kB
Private_Dirty:        12 kB
Locked:                0 kB
VmFlags: rd mr mw me ac
55d0c0200000-55d0c0300000 rw-p 00201000 fd:01 1234                       /usr/lib/libvirt.so.0
Rss:                  16 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
55d0c0300000-55d0c0400000 rw-p 00000000 00:00 0                          [heap]
Rss:                 900 kB
Anonymous:           900 kB
Private_Dirty:       900 kB
7f0000000000-7f0000010000 r-xp 00000000 fd:01 99                         /usr/lib/libpinned.so
Rss:                  64 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
Locked:               64 kB
VmFlags: rd ex mr mw me lo
7f0000010000-7f0000020000 r--p 00000000 fd:01 98                         /usr/lib/libold.so (deleted)
Rss:                  64 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
7f0000020000-7f0000030000 r--p 00000000 fd:01 97                         /usr/lib/libcut.so
Rss:                  64 kB
";

#[test]
fn only_clean_read_only_file_pages_are_released() {
    let maps = mappings(SMAPS);
    assert_eq!(maps.len(), 7);
    assert_eq!(maps[0].start, 0x55d0c0000000);
    assert_eq!(maps[0].path, "/usr/sbin/virtmasq");
    let clean: Vec<_> = maps
        .iter()
        .filter(|m| m.clean_file_pages())
        .map(|m| m.path.as_str())
        .collect();
    // Not: relocated (copied) pages, writable data, the heap, locked pages, a file replaced
    // since, nor a mapping whose figures are missing.
    assert_eq!(clean, ["/usr/sbin/virtmasq"]);
}

/// The resident kB of the mapping that starts at `addr`, from this process's smaps.
fn rss_at(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    mappings(&smaps)
        .into_iter()
        .find(|m| m.start == addr)
        .unwrap_or_else(|| panic!("no mapping at {addr:#x}"))
        .rss_kb
}

/// Maps `len` bytes of `file` privately with `prot`.
fn map(file: &std::fs::File, len: usize, prot: libc::c_int) -> *mut u8 {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh mapping of an open file; the tests unmap it before they return.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    p.cast()
}

/// The `len` bytes mapped at `p`, each read through the mapping.
///
/// # Safety
/// `p` must be a live mapping of at least `len` readable bytes.
unsafe fn read(p: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: as the caller promised.
    (0..len)
        .map(|i| unsafe { p.add(i).read_volatile() })
        .collect()
}

#[test]
fn released_pages_come_back_unchanged_and_copied_pages_stay() {
    const LEN: usize = 64 * 4096;
    let bytes: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut named = tempfile::NamedTempFile::new().unwrap();
    named.write_all(&bytes).unwrap();
    named.as_file().sync_all().unwrap();
    let file = named.as_file();

    let clean = map(file, LEN, libc::PROT_READ);
    let copied = map(file, LEN, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: both mappings are LEN bytes long and live until the munmap below.
    unsafe {
        assert_eq!(read(clean, LEN), bytes);
        copied.add(5).write_volatile(0xee); // a page of its own, as a relocation makes
        assert_eq!(libc::mprotect(copied.cast(), LEN, libc::PROT_READ), 0);
    }
    assert!(
        rss_at(clean as usize) >= 200,
        "the clean mapping is resident"
    );

    let released = release_clean_code().unwrap();
    assert!(released.mappings >= 1 && released.kb >= 200, "{released:?}");
    assert_eq!(
        rss_at(clean as usize),
        0,
        "clean pages are no longer mapped"
    );
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            read(clean, LEN),
            bytes,
            "the pages came back from the file unchanged"
        );
        assert_eq!(copied.add(5).read_volatile(), 0xee, "a copied page is kept");
        libc::munmap(clean.cast(), LEN);
        libc::munmap(copied.cast(), LEN);
    }
}

/// Pages of a file just written, not yet on disk, are dirty in the page cache: smaps counts
/// them as dirty, none is anonymous, and they are released and come back unchanged (as the
/// daemon's binary right after it is installed).
#[test]
fn pages_the_writer_left_dirty_are_released_too() {
    const LEN: usize = 64 * 4096;
    let bytes: Vec<u8> = (0..LEN).map(|i| (i % 241) as u8).collect();
    let mut named = tempfile::NamedTempFile::new().unwrap();
    named.write_all(&bytes).unwrap();
    let file = named.as_file();
    let mapped = map(file, LEN, libc::PROT_READ);
    // SAFETY: the mapping is LEN bytes long and lives until the munmap below.
    assert_eq!(unsafe { read(mapped, LEN) }, bytes);
    let dirty_kb = {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let at = format!("{:x}-", mapped as usize);
        let section = smaps.split_once(&at).expect("the mapping in smaps").1;
        let line = (section.lines())
            .find(|l| l.starts_with("Private_Dirty:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        dirty_kb > 0,
        "the file's pages were already written back: this test proves nothing"
    );
    assert!(rss_at(mapped as usize) >= 200);
    release_clean_code().unwrap();
    assert_eq!(
        rss_at(mapped as usize),
        0,
        "dirty page-cache pages stayed mapped"
    );
    // SAFETY: as above.
    unsafe {
        assert_eq!(read(mapped, LEN), bytes, "the pages came back unchanged");
        libc::munmap(mapped.cast(), LEN);
    }
}
