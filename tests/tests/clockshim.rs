//! The clock shim of the fault tests (`tests/netfault/clockshim.c`) keeps a process's timed
//! waits as long as asked after its clock ran at another rate.
//!
//! Found in the network fault test: a node whose clock had run twice as fast for a few
//! seconds stood that far ahead of the kernel's clock, and every wait with a deadline (Rust's
//! `Condvar::wait_timeout`, parking with a timeout, a channel receive with a timeout) lasted
//! that much longer — its admin port, whose I/O then rested on a thread sleeping 10 ms at a
//! time, went unanswered for as long as its disk was frozen. The shim now turns such a
//! deadline into the real one.
//!
//! The test runs this test binary again under the shim (the ignored `child_*` test below):
//! the child runs its clock at twice the real rate for a second, back at the real rate, and
//! then waits 20 times 10 ms on a condition variable. The parent times the child's waits
//! with the real clock (the child prints them); without the translation each wait took over a
//! second.

use std::path::Path;
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use shoal_testkit::netns::ClockShim;

const CHILD_ENV: &str = "SHOAL_CLOCKSHIM_CHILD_RATE_FILE";
const WAITS: u32 = 20;

/// Seconds since boot from the real clock (`/proc/uptime` is the kernel's, not read through
/// the shim).
fn real_uptime() -> f64 {
    let s = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("/proc/uptime starts with seconds")
}

#[test]
fn a_process_whose_clock_ran_fast_waits_as_long_as_it_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shim = ClockShim::build(dir.path());
    let rate_file = dir.path().join("rate");
    let exe = std::env::current_exe().expect("this test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_waits_after_a_fast_second",
            "--nocapture",
        ])
        .envs(shim.env(&rate_file))
        .env(CHILD_ENV, &rate_file)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("waits took "))
        .unwrap_or_else(|| panic!("the child said nothing of its waits: {stdout}"));
    let (ahead, waits): (f64, f64) = {
        let mut it = line.split(' ').map(|v| v.parse::<f64>().expect("a number"));
        (it.next().expect("ahead"), it.next().expect("waits"))
    };
    assert!(
        ahead > 0.5,
        "the child's clock stood {ahead:.2} s ahead of the real one: the fast second did not take"
    );
    // 20 waits of 10 ms: 0.2 s, and far from 20 × the clock's lead.
    assert!(
        waits < ahead * 5.0,
        "{WAITS} waits of 10 ms took {waits:.2} s of real time with the clock {ahead:.2} s ahead"
    );
}

/// The child (run by the test above under the shim): its clock at twice the real rate for a
/// second, then at the real rate; prints how far its clock stands ahead and the real time its
/// waits took.
#[test]
#[ignore = "run by a_process_whose_clock_ran_fast_waits_as_long_as_it_asks, under the shim"]
fn child_waits_after_a_fast_second() {
    let Some(rate_file) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let rate_file = Path::new(&rate_file);
    let shown = Instant::now();
    let real = real_uptime();
    // The shim reads the rate file when the clock is read (each 20 ms at most): read it
    // through a real second at twice the rate, and a tenth of one after it is back.
    let run_at = |rate: f64, real_secs: f64| {
        ClockShim::set_rate(rate_file, rate);
        let from = real_uptime();
        while real_uptime() - from < real_secs {
            let _ = Instant::now();
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    run_at(2.0, 1.0);
    run_at(1.0, 0.1);
    let ahead = shown.elapsed().as_secs_f64() - (real_uptime() - real);
    let lock = Mutex::new(());
    let cv = Condvar::new();
    let start = real_uptime();
    for _ in 0..WAITS {
        let g = lock.lock().unwrap();
        let _ = cv.wait_timeout(g, Duration::from_millis(10)).unwrap();
    }
    println!("waits took {ahead} {}", real_uptime() - start);
}
