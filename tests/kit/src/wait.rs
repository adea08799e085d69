//! Bounded waits. A test waits for a condition, never for a fixed time, and every wait gives up
//! at a deadline with a message that says what it was waiting for.

use std::time::{Duration, Instant};

/// The default deadline: generous, because the machines that run the suite are shared and
/// slow at times; a healthy cluster needs well under a second for anything waited on here.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Poll `f` until it returns `Some` (its value) or `within` has passed (`None`).
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Poll `f` until it returns `Some`; its value.
///
/// # Panics
/// After `within`, naming `what`.
pub fn wait_some<T>(what: &str, within: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(within, f).unwrap_or_else(|| panic!("gave up waiting for {what} after {within:?}"))
}

/// Poll `done` until it holds.
///
/// # Panics
/// After `within`, naming `what`.
pub fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    wait_some(what, within, || done().then_some(()))
}
