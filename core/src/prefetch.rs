//! A hint that memory is about to be written, for buffers written front to back.
//!
//! A node with many busy groups appends to as many buffers at once (each group's write buffer,
//! watch history, ...), interleaved entry by entry. The processor's own prefetcher follows a
//! few such streams, not dozens: without the hint each append met lines (and pages) that were
//! not cached. Touching the lines the *next* append of that buffer will write, one append
//! ahead, lets them arrive meanwhile.

// The one place in the core besides `inplace` with `unsafe`: the hint is an intrinsic.
#![allow(unsafe_code)]

/// Bytes past the end of an append that are hinted: two records of ~130 bytes.
pub const AHEAD: usize = 256;

/// Hint that `bytes[from..]` (up to [`AHEAD`] bytes of it) will be written soon. A hint only:
/// nothing is read or written, and nothing happens on targets without one.
#[inline]
pub fn for_write(bytes: &[u8], from: usize) {
    let from = from.min(bytes.len());
    // SAFETY: `from..len` lies within `bytes`.
    for_write_spare(unsafe { bytes.as_ptr().add(from) }, bytes.len() - from);
}

/// [`for_write`] for the `len` bytes at `start`, which may be allocated but not yet
/// initialized (a vector's spare capacity). Only the hint is given: the memory is never
/// accessed, so any pointer is sound; a hint into unmapped memory is dropped.
#[inline]
pub fn for_write_spare(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut at = 0;
        while at < len.min(AHEAD) {
            // SAFETY: a prefetch neither reads nor writes memory and does not fault;
            // `wrapping_add` makes no claim about the allocation.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(at) as *const i8,
                );
            }
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_at_or_past_the_end_or_into_spare_capacity_changes_nothing() {
        let bytes = [7u8; 300];
        for from in [0, 1, 44, 299, 300, 301, usize::MAX] {
            for_write(&bytes, from);
        }
        for_write(&[], 0);
        let mut v: std::vec::Vec<u8> = std::vec::Vec::with_capacity(1000);
        v.extend_from_slice(&bytes);
        let spare = v.spare_capacity_mut();
        for_write_spare(spare.as_ptr().cast(), spare.len());
        for_write_spare(core::ptr::null(), 0);
        assert!(bytes.iter().all(|b| *b == 7));
        assert_eq!(v[..], bytes[..]);
    }
}
