//! Storages that forward: a reference to a storage kept elsewhere, and decorators, wrappers
//! that change a few [`Storage`] calls and forward the rest.
//!
//! A decorator (timing syncs, recording writes for a power-cut replay, syncing a backing file,
//! a deliberately broken storage in a test) is a [`Decorated`] pair of the storage it wraps and
//! a hooks value implementing [`StorageHooks`]. Each hook is handed the inner storage, and each
//! has a default that forwards the call unchanged, so a decorator writes only the calls it
//! changes and cannot forget one when the trait grows.
//!
//! It costs nothing by itself: `Decorated` is generic over both halves and every forwarding call
//! is `#[inline]`, so a call through it compiles to the inner call plus whatever the hook adds.
//! shoald wraps the storage of every group this way (its fsync timer), on every write.

use super::{LogView, ReadEntries, Result, Storage};
use crate::entry::EntryRef;
use crate::types::{HardState, LogIndex, SnapshotMeta, Term};

/// A storage `inner` whose calls go through `hooks`; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Decorated<S, H> {
    /// The wrapped storage (reachable for what the `Storage` trait does not cover).
    pub inner: S,
    /// The decorator's own state and behaviour.
    pub hooks: H,
}

impl<S, H> Decorated<S, H> {
    /// Wrap `inner`.
    pub const fn new(inner: S, hooks: H) -> Self {
        Decorated { inner, hooks }
    }
}

/// What a decorator changes. Every method is one [`Storage`] (or [`LogView`]) call, given the
/// inner storage, with the same contract; the defaults forward unchanged. A hook that changes a
/// write must keep the durability contract of [`crate::storage`] as seen from outside.
pub trait StorageHooks<S: Storage + ?Sized> {
    /// [`LogView::snapshot_index`] of the decorated storage.
    #[inline]
    fn snapshot_index(&self, inner: &S) -> LogIndex {
        inner.snapshot_index()
    }
    /// [`LogView::last_index`] of the decorated storage.
    #[inline]
    fn last_index(&self, inner: &S) -> LogIndex {
        inner.last_index()
    }
    /// [`LogView::term`] of the decorated storage.
    #[inline]
    fn term(&self, inner: &S, index: LogIndex) -> Result<Term> {
        inner.term(index)
    }
    /// [`Storage::hard_state`] of the decorated storage.
    #[inline]
    fn hard_state(&self, inner: &S) -> HardState {
        inner.hard_state()
    }
    /// [`Storage::save_hard_state`] of the decorated storage.
    #[inline]
    fn save_hard_state(&mut self, inner: &mut S, hs: &HardState) -> Result<()> {
        inner.save_hard_state(hs)
    }
    /// [`Storage::save_commit_hint`] of the decorated storage.
    #[inline]
    fn save_commit_hint(&mut self, inner: &mut S, hs: &HardState) -> Result<()> {
        inner.save_commit_hint(hs)
    }
    /// [`Storage::append`] of the decorated storage.
    #[inline]
    fn append(&mut self, inner: &mut S, entry: &EntryRef<'_>) -> Result<()> {
        inner.append(entry)
    }
    /// [`Storage::truncate_suffix`] of the decorated storage.
    #[inline]
    fn truncate_suffix(&mut self, inner: &mut S, from: LogIndex) -> Result<()> {
        inner.truncate_suffix(from)
    }
    /// [`Storage::compact_prefix`] of the decorated storage.
    #[inline]
    fn compact_prefix(&mut self, inner: &mut S, upto: LogIndex) -> Result<()> {
        inner.compact_prefix(upto)
    }
    /// [`Storage::read_entries`] of the decorated storage.
    #[inline]
    fn read_entries(
        &self,
        inner: &S,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries> {
        inner.read_entries(lo, hi, buf)
    }
    /// [`Storage::sync`] of the decorated storage.
    #[inline]
    fn sync(&mut self, inner: &mut S) -> Result<()> {
        inner.sync()
    }
    /// [`Storage::snapshot_meta`] of the decorated storage.
    #[inline]
    fn snapshot_meta(&self, inner: &S) -> Option<SnapshotMeta> {
        inner.snapshot_meta()
    }
    /// [`Storage::snapshot_begin`] of the decorated storage.
    #[inline]
    fn snapshot_begin(&mut self, inner: &mut S, meta: &SnapshotMeta) -> Result<()> {
        inner.snapshot_begin(meta)
    }
    /// [`Storage::snapshot_write`] of the decorated storage.
    #[inline]
    fn snapshot_write(&mut self, inner: &mut S, offset: u64, data: &[u8]) -> Result<()> {
        inner.snapshot_write(offset, data)
    }
    /// [`Storage::snapshot_finish`] of the decorated storage.
    #[inline]
    fn snapshot_finish(&mut self, inner: &mut S) -> Result<()> {
        inner.snapshot_finish()
    }
    /// [`Storage::snapshot_read`] of the decorated storage.
    #[inline]
    fn snapshot_read(&self, inner: &S, offset: u64, buf: &mut [u8]) -> Result<usize> {
        inner.snapshot_read(offset, buf)
    }
}

/// Forwards nothing differently: a `Decorated<S, ()>` behaves exactly as `S`.
impl<S: Storage + ?Sized> StorageHooks<S> for () {}

impl<S: Storage, H: StorageHooks<S>> LogView for Decorated<S, H> {
    #[inline]
    fn snapshot_index(&self) -> LogIndex {
        self.hooks.snapshot_index(&self.inner)
    }
    #[inline]
    fn last_index(&self) -> LogIndex {
        self.hooks.last_index(&self.inner)
    }
    #[inline]
    fn term(&self, index: LogIndex) -> Result<Term> {
        self.hooks.term(&self.inner, index)
    }
}

impl<S: Storage, H: StorageHooks<S>> Storage for Decorated<S, H> {
    #[inline]
    fn hard_state(&self) -> HardState {
        self.hooks.hard_state(&self.inner)
    }
    #[inline]
    fn save_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.hooks.save_hard_state(&mut self.inner, hs)
    }
    #[inline]
    fn save_commit_hint(&mut self, hs: &HardState) -> Result<()> {
        self.hooks.save_commit_hint(&mut self.inner, hs)
    }
    #[inline]
    fn append(&mut self, entry: &EntryRef<'_>) -> Result<()> {
        self.hooks.append(&mut self.inner, entry)
    }
    #[inline]
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<()> {
        self.hooks.truncate_suffix(&mut self.inner, from)
    }
    #[inline]
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<()> {
        self.hooks.compact_prefix(&mut self.inner, upto)
    }
    #[inline]
    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        self.hooks.read_entries(&self.inner, lo, hi, buf)
    }
    #[inline]
    fn sync(&mut self) -> Result<()> {
        self.hooks.sync(&mut self.inner)
    }
    #[inline]
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.hooks.snapshot_meta(&self.inner)
    }
    #[inline]
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<()> {
        self.hooks.snapshot_begin(&mut self.inner, meta)
    }
    #[inline]
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.hooks.snapshot_write(&mut self.inner, offset, data)
    }
    #[inline]
    fn snapshot_finish(&mut self) -> Result<()> {
        self.hooks.snapshot_finish(&mut self.inner)
    }
    #[inline]
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.hooks.snapshot_read(&self.inner, offset, buf)
    }
}

/// A storage kept elsewhere (a `static` on a board, so that the node driver never moves it)
/// serves through a reference.
impl<S: LogView + ?Sized> LogView for &mut S {
    fn snapshot_index(&self) -> LogIndex {
        (**self).snapshot_index()
    }
    fn last_index(&self) -> LogIndex {
        (**self).last_index()
    }
    fn term(&self, index: LogIndex) -> Result<Term> {
        (**self).term(index)
    }
}

impl<S: Storage + ?Sized> Storage for &mut S {
    fn hard_state(&self) -> HardState {
        (**self).hard_state()
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<()> {
        (**self).save_hard_state(hs)
    }
    fn save_commit_hint(&mut self, hs: &HardState) -> Result<()> {
        (**self).save_commit_hint(hs)
    }
    fn append(&mut self, entry: &EntryRef<'_>) -> Result<()> {
        (**self).append(entry)
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<()> {
        (**self).truncate_suffix(from)
    }
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<()> {
        (**self).compact_prefix(upto)
    }
    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        (**self).read_entries(lo, hi, buf)
    }
    fn sync(&mut self) -> Result<()> {
        (**self).sync()
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        (**self).snapshot_meta()
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<()> {
        (**self).snapshot_begin(meta)
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).snapshot_write(offset, data)
    }
    fn snapshot_finish(&mut self) -> Result<()> {
        (**self).snapshot_finish()
    }
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).snapshot_read(offset, buf)
    }
}
