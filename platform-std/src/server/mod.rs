//! `shoald`, the Shoal server: one raft thread that owns every group, serves the client
//! connections and runs the batch loop ([`raftloop`], [`clients`]); a blocking thread per peer
//! connection ([`net`]); and the admin HTTP port on a thread of its own ([`admin`]). [`run`]
//! wires them together; `src/bin/shoald.rs` only parses flags and calls it.
//!
//! Storage calls happen only on the raft thread.

// The address book is a data dir file: the storage layer owns its format (tools read it too).
pub use crate::storage::addrbook;
pub mod admin;
pub mod clients;
pub mod config;
pub mod kvsm;
pub mod net;
pub mod raftloop;
pub mod timed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::net::TcpListener;

use crate::storage::{DataDir, Identity, IdentityCheck};

pub use config::{Flags, ServerConfig};

/// Hand freed heap memory back to the OS, after start-up (each segment's data was read into
/// one buffer) and after a flush that applied a long stretch of log at once. glibc raises its
/// mmap threshold when a large block is freed, so later large blocks come from the heap, and
/// their pages stay resident after they are freed unless trimmed: a restart that applied
/// 70 000 entries in one flush kept ~10 MiB that way.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Run a node until SIGTERM/SIGINT. Returns the process exit code; every error on the way up
/// is logged in words first.
pub fn run(cfg: ServerConfig) -> i32 {
    let identity = Identity {
        cluster_id: cfg.cluster_id,
        node_id: cfg.node_id,
        raft_addr: cfg.raft_addr.clone(),
    };
    let stopping = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stopping.clone()) {
            log::error!("cannot install the signal handler: {e}");
            return 2;
        }
    }
    let (tx, rx) = smol::channel::unbounded();
    let net = net::Net::new(
        tx,
        net::HelloInfo {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
            members: Default::default(),
        },
    );
    let bind = |what: &str, addr: &str| -> Result<TcpListener, String> {
        TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on the {what} address {addr}: {e}"))
    };
    let (raft_l, client_l) = match (
        bind("raft", &cfg.raft_addr),
        bind("client", &cfg.client_addr),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("{e}");
            return 2;
        }
    };
    let admin_l = match bind("admin", &cfg.admin_addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    // Ports first, then the data dir: a start that cannot listen leaves a fresh data dir
    // without an identity (so it can still be started with other flags).
    let check = IdentityCheck {
        allow_addr_change: cfg.allow_addr_change,
    };
    let data = match DataDir::start(&cfg.data_dir, &identity, check) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot use data dir {}: {e}", cfg.data_dir.display());
            return 2;
        }
    };
    let fsync_hist = Arc::new(timed::Histogram::default());
    let view = Arc::new(Mutex::new(admin::AdminView::default()));
    let rl = match raftloop::RaftLoop::open(
        cfg.clone(),
        data,
        net.clone(),
        rx,
        fsync_hist.clone(),
        view.clone(),
        stopping.clone(),
    ) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    release_freed_memory();
    let client_l = match async_io::Async::new(client_l) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot watch the client listener: {e}");
            return 2;
        }
    };
    net::raft_listener(net.clone(), raft_l);
    {
        let view = view.clone();
        let fsync = fsync_hist.clone();
        let limits = cfg.admin_limits;
        let spawned = std::thread::Builder::new()
            .name("shoal-admin".into())
            .spawn(move || {
                if let Err(e) = admin::serve(admin_l, view, fsync, limits) {
                    log::error!("the admin port stopped: {e}");
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the admin thread: {e}");
            return 2;
        }
    }
    log::info!(
        "node {} of cluster {} running: raft {}, client {}, admin {}, data {}, fsync {:?}",
        cfg.node_id,
        cfg.cluster_id,
        cfg.raft_addr,
        cfg.client_addr,
        cfg.admin_addr,
        cfg.data_dir.display(),
        cfg.fsync
    );
    let code = rl.run(client_l);
    net.stopping.store(true, Ordering::Relaxed);
    code
}
