//! Owned heap memory for DtKV stores: `DtKv<KvHeap>` owns its buffers, so it is an ordinary
//! value (movable, `Send`, freed when dropped) that shoald, the simulator and the offline
//! tools hold without any `unsafe`.
//!
//! Every buffer comes from `alloc_zeroed`, which for large sizes the allocator serves with
//! fresh pages from the OS that stay untouched (not resident) until written. DtKV writes its
//! slots, buckets and arena only as far as its contents need (see `shoal_kv::KvMemory`), so a
//! node's resident memory follows its data, and the limits (`--kv-max-nodes`,
//! `--kv-arena-mb`, ...) cost address space only.

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};

use shoal_kv::{DtKv, Element, KvLimits, KvMemory, LimitsError};

/// The heap as a DtKV memory provider: each buffer a zeroed `Box<[T]>` the store owns.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvHeap;

/// A DtKV store that owns its heap memory.
pub type HeapKv = DtKv<KvHeap>;

impl KvHeap {
    /// An empty store with `limits`, in buffers allocated for it.
    pub fn store(limits: KvLimits) -> Result<HeapKv, LimitsError> {
        DtKv::new(KvHeap, limits)
    }
}

impl KvMemory for KvHeap {
    type Buf<T: Element> = Box<[T]>;

    fn take<T: Element>(&mut self, len: usize) -> Option<Box<[T]>> {
        Some(zeroed(len))
    }
}

/// `len` all-zero elements from `alloc_zeroed`, so untouched pages stay non-resident
/// (`vec![T::EMPTY; len]` would write every element).
fn zeroed<T: Element>(len: usize) -> Box<[T]> {
    let layout = Layout::array::<T>(len).expect("DtKV buffer size overflows");
    if layout.size() == 0 {
        return Box::default();
    }
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[T; len]`,
    // which is the layout `Box<[T]>` frees with, and all `len` elements are initialised:
    // all-zero bytes are a valid value of every `Element` (a sealed trait; shoal_kv documents
    // and keeps this for each of its element types).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_kv::{EventSlot, NodeSlot, SessionSlot};

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
