//! Where the client's background work runs: connection readers, watches and lock renewals are
//! tasks on one executor thread of the client's own, started by the first task.
//!
//! The `smol` crate offers the same through `smol::spawn`, but it also brings process and signal
//! handling (async-process, async-signal), which a client library has no use for; the smol
//! family's own pieces (async-executor, async-io) are all this needs. Timers and sockets use
//! async-io's reactor, so a client's futures run on any executor, or on
//! [`async_io::block_on`].

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use async_executor::{Executor, Task};

static EXECUTOR: Executor<'static> = Executor::new();

/// Run `future` in the background; dropping the returned task cancels it.
pub(crate) fn spawn<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Task<T> {
    static START: Once = Once::new();
    START.call_once(|| {
        std::thread::Builder::new()
            .name("shoal-client".into())
            .spawn(|| loop {
                // One task's panic must not stop every other client task: run on.
                let run =
                    || async_io::block_on(EXECUTOR.run(futures_lite::future::pending::<()>()));
                let _ = catch_unwind(AssertUnwindSafe(run));
            })
            .expect("cannot start the shoal-client executor thread");
    });
    EXECUTOR.spawn(future)
}
