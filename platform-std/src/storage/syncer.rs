//! The background fdatasync thread of the `async` fsync mode.
//!
//! `sync()` in async mode hands the files it wrote to this thread and returns; the thread waits
//! at most `async_sync_interval` after the first request (gathering later ones into the same
//! batch) and then fdatasyncs them. A failure is remembered and reported by the next `sync()`,
//! after which the storage refuses writes (a failed fsync leaves the page cache in an unknown
//! state; retrying it is not safe).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Files to fdatasync in the next batch.
    files: Vec<Arc<File>>,
    /// Sync what is pending and exit.
    stop: bool,
    /// Exit without syncing (a simulated power cut).
    abandon: bool,
    /// The first fdatasync failure, if any.
    failed: Option<String>,
    /// Batches completed (for tests and metrics).
    batches: u64,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// Handle to the background thread; dropping it syncs what is pending and joins the thread.
pub(crate) struct Syncer {
    shared: Shared,
    handle: Option<JoinHandle<()>>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

impl Syncer {
    /// Start the thread; it fdatasyncs at most `interval` after each request.
    pub(crate) fn start(name: String, interval: Duration) -> std::io::Result<Syncer> {
        let shared: Shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let worker = shared.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            crate::affinity::leave_raft_cpu();
            run(worker, interval)
        })?;
        Ok(Syncer {
            shared,
            handle: Some(handle),
        })
    }

    /// Ask for `file` to be fdatasynced within the interval. Returns the first failure seen so
    /// far, if any.
    pub(crate) fn request(&self, file: &Arc<File>) -> Result<(), String> {
        let mut st = lock(&self.shared);
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if !st.files.iter().any(|f| Arc::ptr_eq(f, file)) {
            st.files.push(file.clone());
        }
        self.shared.1.notify_all();
        Ok(())
    }

    /// Batches of fdatasyncs completed so far.
    #[cfg(test)]
    pub(crate) fn batches(&self) -> u64 {
        lock(&self.shared).batches
    }

    /// Stop without syncing what is pending (a simulated power cut).
    #[cfg(test)]
    pub(crate) fn abandon(mut self) {
        lock(&self.shared).abandon = true;
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.1.notify_all();
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("the async fsync thread panicked");
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(shared: Shared, interval: Duration) {
    loop {
        let mut st = lock(&shared);
        while st.files.is_empty() && !st.stop {
            st = shared.1.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if !st.stop {
            // Gather the writes of the next `interval` into this batch; wake early on stop.
            st = shared
                .1
                .wait_timeout_while(st, interval, |s| !s.stop)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if st.abandon {
            return;
        }
        let files = std::mem::take(&mut st.files);
        let stop = st.stop;
        drop(st);
        for f in &files {
            if let Err(e) = f.sync_data() {
                log::error!("background fdatasync failed: {}", e);
                let mut st = lock(&shared);
                st.failed.get_or_insert_with(|| e.to_string());
            }
        }
        lock(&shared).batches += 1;
        if stop {
            return;
        }
    }
}
