//! `shoald`, the Shoal server: one raft thread that owns every group, serves the client
//! connections and runs the batch loop ([`raftloop`], [`clients`]); a blocking thread per peer
//! connection ([`net`]); and the admin HTTP port on a thread of its own ([`admin`]). [`run`]
//! wires them together; `src/bin/shoald.rs` only parses flags and calls it.
//!
//! Storage calls happen only on the raft thread.

// The address book is a data dir file: the storage layer owns its format (tools read it too).
pub use crate::storage::addrbook;
pub mod accept;
pub mod admin;
pub mod auth;
pub mod clients;
pub mod config;
pub mod fdlimit;
pub mod health;
pub mod kvsm;
pub mod logging;
pub mod net;
pub mod overrides;
pub mod peer_seal;
pub mod raftloop;
pub mod timed;
pub mod tls;
pub mod tls_stream;

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

/// The three listening sockets of a node, bound before anything is written to its data dir.
struct Listeners {
    raft: TcpListener,
    client: TcpListener,
    admin: TcpListener,
}

impl Listeners {
    fn bind(cfg: &ServerConfig) -> Result<Listeners, String> {
        let bind = |what: &str, addr: &str| -> Result<TcpListener, String> {
            TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on the {what} address {addr}: {e}"))
        };
        Ok(Listeners {
            raft: bind("raft", &cfg.raft_addr)?,
            client: bind("client", &cfg.client_addr)?,
            admin: bind("admin", &cfg.admin_addr)?,
        })
    }
}

/// SIGTERM and SIGINT set the returned flag (the raft loop drains and stops on it).
fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stopping = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stopping.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    Ok(stopping)
}

/// Re-read the certificate files on every SIGHUP (a thread of its own waits for it) and, every
/// `--cert-check-interval`, when one of them changed (another thread looks).
fn reload_on_sighup(tls: Arc<tls::Tls>) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    let hup = tls.clone();
    std::thread::Builder::new()
        .name("shoal-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                hup.reload_logged("SIGHUP");
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the SIGHUP thread: {e}"))?;
    let every = tls.check_interval();
    if every.is_zero() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("shoal-certcheck".into())
        .stack_size(64 << 10)
        .spawn(move || loop {
            std::thread::sleep(every);
            tls.reload_if_changed();
        })
        .map(drop)
        .map_err(|e| format!("cannot start the certificate check thread: {e}"))
}

/// Serve the admin port on a thread of its own.
fn start_admin(
    listener: TcpListener,
    view: Arc<Mutex<admin::AdminView>>,
    fsync: Arc<timed::Histogram>,
    limits: admin::AdminLimits,
    tls: Option<Arc<tls::Tls>>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("shoal-admin".into())
        .spawn(move || {
            if let Err(e) = admin::serve(listener, view, fsync, limits, tls) {
                log::error!("the admin port stopped: {e}");
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the admin thread: {e}"))
}

/// Run a node until SIGTERM/SIGINT. Returns the process exit code; every error on the way up
/// is logged in words first.
pub fn run(cfg: ServerConfig) -> i32 {
    match start(&cfg) {
        Ok((rl, net, client_l)) => {
            let code = rl.run(client_l);
            net.stopping.store(true, Ordering::Relaxed);
            code
        }
        Err(e) => {
            log::error!("{e}");
            2
        }
    }
}

/// Everything before the raft loop runs: signals, ports, the data dir (locked), the groups,
/// the peer listener and the admin thread. An error here is a refused start (exit 2).
fn start(
    cfg: &ServerConfig,
) -> Result<
    (
        raftloop::RaftLoop,
        Arc<net::Net>,
        async_io::Async<TcpListener>,
    ),
    String,
> {
    let identity = Identity {
        cluster_id: cfg.cluster_id,
        node_id: cfg.node_id,
        raft_addr: cfg.raft_addr.clone(),
    };
    // Before any thread starts, so that each one inherits the CPUs it may use.
    crate::affinity::apply(cfg.raft_cpu)?;
    let stopping = stop_on_signals()?;
    let (tx, rx) = smol::channel::unbounded();
    let net = net::Net::new(
        tx,
        net::HelloInfo {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
            members: Default::default(),
        },
        cfg.peer_limits,
        cfg.accept_backoff_max,
    );
    if let Some(path) = &cfg.peer_psk_file {
        let seal = peer_seal::PeerSeal::from_file(path, cfg.cluster_id, cfg.node_id)?;
        let _ = net.seal.set(seal);
        log::info!(
            "peer links are sealed with the cluster key in {}",
            path.display()
        );
    }
    let tls = tls::Tls::load(&cfg.tls, cfg.cluster_id, cfg.node_id)?;
    if let Some(t) = &tls {
        let _ = net.tls.set(t.clone());
        reload_on_sighup(t.clone())?;
        log::info!(
            "TLS 1.3: client and admin ports {}, raft port {}",
            if t.client_port().is_some() {
                "on"
            } else {
                "off"
            },
            if t.peer().is_some() {
                "mutual TLS"
            } else {
                "off"
            }
        );
    }
    // Ports first, then the data dir: a start that cannot listen leaves a fresh data dir
    // without an identity (so it can still be started with other flags).
    let listeners = Listeners::bind(cfg)?;
    let check = IdentityCheck {
        allow_addr_change: cfg.allow_addr_change,
    };
    let data = DataDir::start(&cfg.data_dir, &identity, check)
        .map_err(|e| format!("cannot use data dir {}: {e}", cfg.data_dir.display()))?;
    let fsync_hist = Arc::new(timed::Histogram::default());
    let view = Arc::new(Mutex::new(admin::AdminView::default()));
    let rl = raftloop::RaftLoop::open(
        cfg.clone(),
        data,
        net.clone(),
        rx,
        fsync_hist.clone(),
        view.clone(),
        stopping,
    )?;
    release_freed_memory();
    let client_l = async_io::Async::new(listeners.client)
        .map_err(|e| format!("cannot watch the client listener: {e}"))?;
    net::raft_listener(net.clone(), listeners.raft);
    start_admin(listeners.admin, view, fsync_hist, cfg.admin_limits, tls)?;
    log::info!(
        "node {} of cluster {} running: raft {}, client {}{}, admin {}, data {}, fsync {:?}",
        cfg.node_id,
        cfg.cluster_id,
        cfg.raft_addr,
        cfg.client_addr,
        if cfg.advertise_client_addr == cfg.client_addr {
            String::new()
        } else {
            format!(" (advertised as {})", cfg.advertise_client_addr)
        },
        cfg.admin_addr,
        cfg.data_dir.display(),
        cfg.fsync
    );
    Ok((rl, net, client_l))
}
