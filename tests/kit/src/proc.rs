//! [`Proc`]: one child process of a test, which never outlives it.
//!
//! It never sees the test's own `SHOAL_*` environment variables (only those its command sets).
//! Its stdout and stderr go to a log file (or stdout to the test, [`Proc::spawn_piped`]); when
//! the test panics, dropping the `Proc` prints the log's last lines. Dropping it kills the
//! process (SIGKILL) and reaps it, whether the test passed or panicked. On Linux the child also
//! gets SIGKILL when the thread that started it ends, so a test process killed from outside
//! (a timeout, ^C) leaves no server holding ports behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use crate::cli::strip_shoal_env;
use crate::wait::{poll, wait_some};

/// How long a process may take to exit after SIGTERM.
pub const STOP_WAIT: Duration = Duration::from_secs(15);

/// Lines of the log printed when a test panics.
const TAIL_LINES: usize = 40;

/// A child process that is killed when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Start `cmd` with stdin closed and stdout and stderr written to `log`. `name` says which
    /// process this is in failure messages.
    pub fn spawn(name: impl Into<String>, cmd: Command, log: &Path) -> Proc {
        let out = File::create(log)
            .unwrap_or_else(|e| panic!("create the log file {}: {e}", log.display()));
        let err = out.try_clone().expect("a second handle to the log file");
        Proc::start(name.into(), cmd, log, Stdio::from(out), err)
    }

    /// Start `cmd` with stdin closed, stderr written to `log` and stdout handed to the caller
    /// (for a process that reports on stdout).
    pub fn spawn_piped(name: impl Into<String>, cmd: Command, log: &Path) -> (Proc, ChildStdout) {
        let err = File::create(log)
            .unwrap_or_else(|e| panic!("create the log file {}: {e}", log.display()));
        let mut p = Proc::start(name.into(), cmd, log, Stdio::piped(), err);
        let stdout = p.child.stdout.take().expect("stdout was piped");
        (p, stdout)
    }

    fn start(name: String, mut cmd: Command, log: &Path, stdout: Stdio, stderr: File) -> Proc {
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        strip_shoal_env(&mut cmd);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name,
            child,
            log: log.to_path_buf(),
            exit: None,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("waitpid on our own child");
        }
        self.exit
    }

    /// Whether it is still running (a paused process is running).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Wait (at most `within`) for it to exit on its own; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait_some(&what, within, || self.try_exit())
    }

    /// SIGTERM, then wait ([`STOP_WAIT`] at most) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::TERM);
        let within = STOP_WAIT;
        if let Some(st) = poll(within, || self.try_exit()) {
            return st;
        }
        panic!(
            "{} ignored SIGTERM for {within:?}; its log ends:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// SIGKILL and reap (nothing if it has exited).
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// SIGSTOP: the process stays alive but runs no more (its sockets stay open, unanswered).
    pub fn pause(&mut self) {
        self.signal(Signal::STOP);
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&mut self) {
        self.signal(Signal::CONT);
    }

    fn signal(&mut self, sig: Signal) {
        assert!(
            self.try_exit().is_none(),
            "{} has already exited ({:?}); cannot send it {sig:?}",
            self.name,
            self.exit
        );
        kill_process(Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("send {sig:?} to {}: {e}", self.name));
    }

    /// Its resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS") * 1024
    }

    /// Its peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM") * 1024
    }

    /// Its virtual memory now (`VmSize`), in bytes: what it allocated, touched or not.
    pub fn vm_bytes(&self) -> u64 {
        self.status_kib("VmSize") * 1024
    }

    /// Its threads now.
    pub fn threads(&self) -> u64 {
        self.status_kib("Threads")
    }

    /// The number of field `name` of `/proc/PID/status` (kB fields are in KiB).
    fn status_kib(&self, name: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path} of {}: {e}", self.name));
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {path}"))
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its log is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}, last lines) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// Raise this process's open-file limit to `want` descriptors (or its hard limit, if lower),
/// for a test that opens thousands of connections; the processes it starts inherit it. The
/// limit it got.
pub fn raise_fd_limit(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= want {
        return soft;
    }
    limit.current = Some(want.min(hard));
    setrlimit(Resource::Nofile, limit)
        .unwrap_or_else(|e| panic!("raise the open-file limit to {:?}: {e}", limit.current));
    limit.current.expect("just set")
}

/// Have the kernel kill the child when the thread that started it ends.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it makes one system call
    // (prctl), which is async-signal-safe, and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Start `cmd` with at most `n` open file descriptors (`RLIMIT_NOFILE`, soft and hard), as a
/// process under a low `ulimit -n` runs.
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it makes one system call
    // (setrlimit), which is async-signal-safe, and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            let limit = rustix::process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done",
        ]);
        Proc::spawn("sleeper", cmd, &dir.join("sleeper.log"))
    }

    #[test]
    fn stop_pause_resume_and_kill() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sleeper(dir.path());
        crate::wait_for("the sleeper's first line", crate::WAIT, || {
            p.log().contains("started")
        });
        p.pause();
        assert!(p.is_running(), "a paused process is alive");
        p.resume();
        let st = p.stop();
        assert!(st.success(), "the trap exits 0: {st:?}");
        assert!(p.log().contains("bye"), "{}", p.log());
        assert!(!p.is_running());

        let mut q = sleeper(dir.path());
        q.kill();
        assert!(!q.try_exit().expect("reaped").success());
    }

    #[test]
    fn dropping_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = sleeper(dir.path());
        let pid = Pid::from_raw(p.pid() as i32).expect("a positive pid");
        drop(p);
        // Reaped by the drop: the pid no longer names a process of ours.
        assert!(kill_process(pid, Signal::CONT).is_err());
    }

    #[test]
    fn a_test_that_panics_still_kills_its_processes() {
        let dir = tempfile::tempdir().unwrap();
        let mut pid = None;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let p = sleeper(dir.path());
            pid = Pid::from_raw(p.pid() as i32);
            panic!("the test failed with the process running");
        }));
        assert!(failed.is_err());
        let pid = pid.expect("the process was started");
        assert!(kill_process(pid, Signal::CONT).is_err(), "still running");
    }
}
