//! Free TCP ports on 127.0.0.1.
//!
//! Ports come from below the kernel's ephemeral range (`ip_local_port_range`): a port from
//! inside it could be taken as the source port of some outgoing connection while its node is
//! down between a kill and a restart, and the restart would then fail to bind. Each test
//! process starts at its own pseudo-random place in the range and walks on from there, so it
//! never hands out a port twice and seldom meets another test process; a port is handed out only
//! if it can be bound at that moment.

use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out.
const LOWEST: u16 = 20_000;

/// Where this process looks next.
static NEXT: Mutex<Option<u16>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listens on now and that this process has not handed out.
pub fn free_port() -> u16 {
    let top = ephemeral_start();
    if top <= LOWEST + 1_000 {
        // An unusual kernel setting leaves no room below the ephemeral range: let it choose.
        return kernel_port();
    }
    let span = top - LOWEST;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut port = next.unwrap_or_else(|| LOWEST + (seed() % span as u64) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= top { LOWEST } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free TCP port on 127.0.0.1 from {LOWEST} to {top}");
}

/// `127.0.0.1:PORT` for a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// An address nothing listens on (for a node that is down or never existed).
pub fn dead_addr() -> String {
    free_addr()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port chosen by the kernel")
        .port()
}

/// Differs between test processes started at the same time.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "{ports:?}");
        let top = ephemeral_start();
        for p in ports {
            assert!(top <= LOWEST + 1_000 || (LOWEST..top).contains(&p), "{p}");
        }
        let a = free_addr();
        TcpListener::bind(&a).expect("a free address can be bound");
    }
}
