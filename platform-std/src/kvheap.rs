//! Owned heap memory for DtKV stores: `DtKv<KvHeap>` owns its buffers, so it is an ordinary
//! value (movable, `Send`, freed when dropped) that shoald, the simulator and the offline
//! tools hold without any `unsafe`.
//!
//! Every buffer is an anonymous map of its own, whose pages the OS hands over zeroed and
//! leaves untouched (not resident) until written. DtKV writes its slots, buckets and arena only
//! as far as its contents need (see `shoal_kv::KvMemory`), so a node's resident memory follows
//! its data, and the limits (`--kv-max-nodes`, `--kv-arena-mb`, ...) cost address space only.
//!
//! Not `alloc_zeroed`: glibc raises its mmap threshold (up to 32 MiB) when a large block is
//! freed, after which buffers of a few MiB come from the heap, where `calloc` must clear a
//! reused block page by page. A node creating thousands of groups then made most of each
//! group's buffers resident: 10,000 idle groups took 577 KiB each instead of about 65.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use memmap2::{MmapMut, UncheckedAdvice};
use shoal_kv::{DtKv, Element, KvLimits, KvMemory, LimitsError};

/// The heap as a DtKV memory provider: each buffer a [`Zeroed`] map the store owns.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvHeap;

/// A DtKV store that owns its memory.
pub type HeapKv = DtKv<KvHeap>;

impl KvHeap {
    /// An empty store with `limits`, in buffers mapped for it.
    pub fn store(limits: KvLimits) -> Result<HeapKv, LimitsError> {
        DtKv::new(KvHeap, limits)
    }
}

impl KvMemory for KvHeap {
    type Buf<T: Element> = Zeroed<T>;

    fn take<T: Element>(&mut self, len: usize) -> Option<Zeroed<T>> {
        Zeroed::new(len).ok()
    }

    fn release<T: Element>(buf: &mut Zeroed<T>, from: usize) {
        buf.release_from(from);
    }
}

/// `len` all-zero `T`s in an anonymous map of their own, unmapped when dropped.
pub struct Zeroed<T> {
    map: MmapMut,
    len: usize,
    _elements: PhantomData<T>,
}

impl<T: Element> Zeroed<T> {
    /// `len` all-zero elements (a map of at least one byte: an empty one cannot be made).
    pub fn new(len: usize) -> std::io::Result<Zeroed<T>> {
        let bytes = std::mem::size_of::<T>()
            .checked_mul(len)
            .ok_or_else(|| std::io::Error::other("DtKV buffer size overflows"))?;
        let map = MmapMut::map_anon(bytes.max(1))?;
        debug_assert_eq!(map.as_ptr().align_offset(std::mem::align_of::<T>()), 0);
        Ok(Zeroed {
            map,
            len,
            _elements: PhantomData,
        })
    }

    /// Give the whole pages holding elements `from..` back to the system: they stop counting
    /// as resident and read back as zeros (a valid `Element`) until written again.
    pub fn release_from(&mut self, from: usize) {
        let page = page_size();
        let start = (from.min(self.len) * std::mem::size_of::<T>()).next_multiple_of(page);
        let end = self.map.len();
        if start >= end {
            return;
        }
        // SAFETY: `DontNeed` on a private anonymous map only replaces the range's pages with
        // zero-filled ones on the next touch; no reference into the range outlives this
        // `&mut self`, and all-zero bytes are a valid value of every `Element`.
        let done = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
        };
        if let Err(e) = done {
            log::warn!("cannot release {} bytes of a DtKV buffer: {e}", end - start);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads its argument.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

impl<T: Element> Deref for Zeroed<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the map is page-aligned (more than any element's alignment), at least
        // `len * size_of::<T>()` bytes long, and lives as long as `self`; its bytes started
        // zero, and all-zero bytes are a valid value of every `Element` (a sealed trait;
        // shoal_kv documents and keeps this for each of its element types), as are whatever
        // values were written through `deref_mut` since.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Element> DerefMut for Zeroed<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, through the map's unique mutable borrow.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Element> AsRef<[T]> for Zeroed<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Element> AsMut<[T]> for Zeroed<T> {
    fn as_mut(&mut self) -> &mut [T] {
        self
    }
}

/// `len` all-zero elements (tests).
#[cfg(test)]
fn zeroed<T: Element>(len: usize) -> Zeroed<T> {
    Zeroed::new(len).expect("mapped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_kv::{EventSlot, NodeSlot, SessionSlot};

    #[test]
    fn released_pages_read_back_as_zeros_and_the_rest_is_kept() {
        let mut b: Zeroed<u8> = zeroed(4 * 4096);
        b.fill(7);
        b.release_from(4096 + 1);
        // The page holding element 4096 + 1 is kept whole; the pages after it are released.
        assert!(b[..2 * 4096].iter().all(|&x| x == 7));
        assert!(b[2 * 4096..].iter().all(|&x| x == 0));
        b[3 * 4096] = 9;
        assert_eq!(b[3 * 4096], 9, "a released page takes writes again");
        b.release_from(1 << 30);
        assert_eq!(b[3 * 4096], 9, "nothing past the end to release");
    }

    #[test]
    fn zeroed_elements_are_empty_values() {
        let sessions = zeroed::<SessionSlot>(3);
        assert_eq!(sessions.len(), 3);
        assert_eq!(
            format!("{:?}", sessions[2]),
            format!("{:?}", SessionSlot::EMPTY)
        );
        assert!(format!("{:?}", sessions[2]).contains("result: Done"));
        let nodes = zeroed::<NodeSlot>(2);
        assert_eq!(format!("{:?}", nodes[1]), format!("{:?}", NodeSlot::EMPTY));
        assert!(zeroed::<EventSlot>(0).is_empty());
        assert!(zeroed::<u32>(5).iter().all(|&w| w == 0));
    }

    #[test]
    fn an_owned_store_is_send() {
        fn send<T: Send>(_: &T) {}
        let kv = KvHeap::store(KvLimits::embedded()).expect("valid");
        send(&kv);
        let kv = std::thread::spawn(move || kv).join().expect("moved");
        assert_eq!(kv.node_count(), 1);
    }

    #[test]
    fn a_store_on_zeroed_buffers_works_and_keeps_its_limits() {
        let mut limits = KvLimits::embedded();
        limits.max_nodes = 3;
        let mut kv = KvHeap::store(limits).expect("valid");
        let mut buf = [0u8; 256];
        for (i, key) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
            let n = shoal_kv::Command {
                client_id: 9,
                seq: i as u64 + 1,
                time_ms: 1,
                op: shoal_kv::Op::Put { key, value: b"v" },
            }
            .encode(&mut buf)
            .expect("fits");
            let out = shoal_core::io::StateMachine::apply(&mut kv, i as u64 + 1, 1, &buf[..n]);
            let expect = if i < 2 {
                None
            } else {
                Some(shoal_kv::KvError::TooManyNodes)
            };
            assert_eq!(out.result.error(), expect);
        }
        assert_eq!(kv.get(b"b").expect("stored").value, b"v");
    }
}
