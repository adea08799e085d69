//! Running the command-line tools (`shoalctl`, `shoal-inspect`) as a script would: with a
//! deadline, output captured, exit code kept.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bins::bin;
use crate::wait::poll;

/// How long one `shoalctl` run may take.
pub const CTL_WAIT: Duration = Duration::from_secs(30);
/// How long one `shoal-inspect` run may take (it reads whole data dirs).
pub const INSPECT_WAIT: Duration = Duration::from_secs(60);

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (-1 when a signal ended it).
    pub code: i32,
    /// Everything written to stdout.
    pub out: String,
    /// Everything written to stderr.
    pub err: String,
}

impl Output {
    /// Stdout, after checking the command succeeded.
    ///
    /// # Panics
    /// On any exit code but 0, with the command and both outputs.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self}");
        &self.out
    }

    /// Stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.out.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self}"))
    }

    /// Stdout as one JSON document per line.
    pub fn json_lines(&self) -> Vec<Value> {
        self.out
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("line {l:?} is not JSON ({e}): {self}"))
            })
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.code, self.out, self.err
        )
    }
}

/// Run `cmd` to completion, `stdin` as its standard input, killing it after `within`.
///
/// # Panics
/// When it runs longer than `within`.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, within: Duration) -> Output {
    let dir = tempfile::tempdir().expect("a temporary dir for the output");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let command = format!("{cmd:?}");
    strip_shoal_env(&mut cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(std::fs::File::create(&out_path).expect("the stdout file"))
    .stderr(std::fs::File::create(&err_path).expect("the stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {command}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A command may exit before reading everything; that is its answer, not ours to judge.
        let _ = pipe.write_all(input);
    }
    let status = wait_within(&mut child, &command, within);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    Output {
        command,
        code: status.code().unwrap_or(-1),
        out: read(&out_path),
        err: read(&err_path),
    }
}

/// Wait for `child` (started as `command`) to exit.
///
/// # Panics
/// When it runs longer than `within` (it is killed first).
fn wait_within(child: &mut std::process::Child, command: &str, within: Duration) -> ExitStatus {
    let status = poll(within, || {
        child.try_wait().expect("waitpid on our own child")
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command} ran longer than {within:?}");
    })
}

/// Run `cmd` to completion (killing it after `within`) with its stdout a pipe nobody reads:
/// the reading end is closed before it starts, so its first write fails with `EPIPE`, as in
/// `cmd | head -0`. Its stdout is empty in the result.
///
/// # Panics
/// When it runs longer than `within`.
pub fn run_into_closed_pipe(mut cmd: Command, within: Duration) -> Output {
    let (reading, writing) = pipe();
    drop(reading);
    cmd.stdout(Stdio::from(writing));
    let dir = tempfile::tempdir().expect("a temporary dir for the output");
    let err_path = dir.path().join("err");
    cmd.stderr(std::fs::File::create(&err_path).expect("the stderr file"));
    cmd.stdin(Stdio::null());
    strip_shoal_env(&mut cmd);
    let command = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {command}: {e}"));
    // The parent's copy of the writing end goes with `cmd`.
    drop(cmd);
    let status = wait_within(&mut child, &command, within);
    Output {
        command,
        code: exit_code(status),
        out: String::new(),
        err: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// A pipe whose ends are closed on exec: a child another test starts meanwhile must not
/// inherit the reading end, or the pipe stays open and the writes succeed (seen in CI: exit 0
/// instead of 141). `Command` clears the flag on the copy it makes the child's stdout.
fn pipe() -> (rustix::fd::OwnedFd, rustix::fd::OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("a pipe")
}

/// The exit code, or 128 + the signal that ended the process (as a shell reports it).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `shoalctl --endpoints ENDPOINTS ARGS` (no `SHOAL_*` variables of the caller's leak in).
pub fn shoalctl(endpoints: &str, args: &[&str]) -> Output {
    shoalctl_with_input(endpoints, args, None)
}

/// [`shoalctl`] reading `stdin` (batch mode).
pub fn shoalctl_with_input(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin("shoalctl"));
    cmd.arg("--endpoints").arg(endpoints).args(args);
    run(cmd, stdin, CTL_WAIT)
}

/// A command left running (`shoalctl lock KEY -- sleep 60`, a watch); killed when dropped.
pub struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// [`shoalctl`] started and left running, its output discarded (end it by dropping it).
pub fn shoalctl_background(endpoints: &str, args: &[&str]) -> Background {
    let mut cmd = Command::new(bin("shoalctl"));
    cmd.arg("--endpoints").arg(endpoints).args(args);
    strip_shoal_env(&mut cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Background(cmd.spawn().expect("shoalctl starts"))
}

/// [`shoalctl`] writing into a pipe whose reader has gone; see [`run_into_closed_pipe`].
pub fn shoalctl_into_closed_pipe(endpoints: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("shoalctl"));
    cmd.arg("--endpoints").arg(endpoints).args(args);
    run_into_closed_pipe(cmd, CTL_WAIT)
}

/// [`inspect`] writing into a pipe whose reader has gone; see [`run_into_closed_pipe`].
pub fn inspect_into_closed_pipe(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("shoal-inspect"));
    cmd.args(args);
    run_into_closed_pipe(cmd, INSPECT_WAIT)
}

/// `shoal-inspect ARGS`.
pub fn inspect(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("shoal-inspect"));
    cmd.args(args);
    run(cmd, None, INSPECT_WAIT)
}

/// `shoal-inspect --json ARGS`: exit code and the parsed document.
pub fn inspect_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = inspect(&all);
    (o.code, o.json())
}

/// Keep the `SHOAL_*` variables of the test's own environment out of `cmd`'s (those `cmd` sets
/// itself stay), so that a developer's settings never change what a test runs.
pub(crate) fn strip_shoal_env(cmd: &mut Command) {
    let own: Vec<std::ffi::OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") && !own.contains(&k) {
            cmd.env_remove(k);
        }
    }
}

/// [`Cluster::single_node`](crate::Cluster::single_node) after a first write through shoalctl
/// (`mkdir app`), so later commands find a leader at once; the cluster and its client address.
pub fn ready_single_node() -> (crate::Cluster, String) {
    let c = crate::Cluster::single_node();
    let addr = c.node(1).client.clone();
    // The client retries while the server starts and elects itself.
    let o = shoalctl(&addr, &["--timeout", "20s", "mkdir", "app"]);
    assert_eq!(o.code, 0, "{o}");
    (c, addr)
}

/// The contacted node's last log index, from `shoalctl -o json status`.
pub fn last_index(addr: &str) -> u64 {
    shoalctl(addr, &["-o", "json", "status"]).json()["last_index"]
        .as_u64()
        .expect("status has last_index")
}

/// `shoalctl --endpoints ENDPOINTS ARGS` left running (a `lease keep-alive`, an `elect`), its
/// stdout and stderr in `log`; stop it with [`Proc::stop`](crate::Proc::stop) or by dropping it.
pub fn shoalctl_running(endpoints: &str, args: &[&str], log: &std::path::Path) -> crate::Proc {
    let mut cmd = Command::new(bin("shoalctl"));
    cmd.arg("--endpoints").arg(endpoints).args(args);
    crate::Proc::spawn(format!("shoalctl {}", args.join(" ")), cmd, log)
}

/// `shoalctl lease grant TTL`: the new lease's id.
///
/// # Panics
/// When the grant fails.
pub fn lease_grant(endpoints: &str, ttl: &str) -> u64 {
    let o = shoalctl(endpoints, &["-o", "json", "lease", "grant", ttl]);
    assert_eq!(o.code, 0, "{o}");
    o.json()["id"].as_u64().expect("a grant answers its id")
}

/// The first line of `proc`'s log for which `pick` gives something, waiting up to `within`.
///
/// # Panics
/// When no such line appears in time, with the log.
pub fn wait_log_line<T>(
    proc: &crate::Proc,
    what: &str,
    within: Duration,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> T {
    crate::wait::wait_some(what, within, || proc.log().lines().find_map(&mut pick))
}

/// The shoalctl commands (run while auth is off) that make the users `root` (password
/// `rootpw`) and `alice` (`alicepw`) and the role `app` — readwrite on the subtree `app` —
/// held by alice: the common start of the auth tests, over plaintext and over TLS.
pub const AUTH_USERS: &[&[&str]] = &[
    &["user", "add", "root:rootpw"],
    &["user", "add", "alice:alicepw"],
    &["role", "add", "app"],
    &[
        "role",
        "grant-permission",
        "app",
        "readwrite",
        "app",
        "--prefix",
    ],
    &["user", "grant-role", "alice", "app"],
];

#[cfg(test)]
mod tests {
    use rustix::io::{fcntl_getfd, FdFlags};

    /// Neither end of the closed-pipe helper's pipe leaks into children other threads start.
    #[test]
    fn the_pipe_is_closed_on_exec() {
        let (reading, writing) = super::pipe();
        for fd in [&reading, &writing] {
            assert!(fcntl_getfd(fd).unwrap().contains(FdFlags::CLOEXEC));
        }
    }
}
