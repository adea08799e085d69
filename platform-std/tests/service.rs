//! shoald as a service: systemd's readiness protocol (`Type=notify`), JSON log lines for log
//! collectors, `--version` and the generated completions and man pages of every packaged binary.
#![cfg(unix)]

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use shoal_testkit::cli::run;
use shoal_testkit::{bin, wait_for, Cluster, WAIT};

/// `bin(name) args`.
fn cmd(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin(name));
    c.args(args);
    c
}

/// The next datagram on `sock`, within `WAIT`.
fn next_notice(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("a notice from shoald within the wait");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn shoald_tells_systemd_it_is_ready_once_led_and_that_it_is_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut c = Cluster::builder()
        .voters([1])
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .build();
    c.start(1);
    let ready = next_notice(&sock);
    assert!(ready.contains("READY=1"), "{ready}");
    // Ready means serving: a leader is there and a write goes through at once.
    assert_eq!(c.wait_leader(0), 1);
    c.put(0, 7, 1, "k", "v");
    assert!(c.stop(1).success(), "{}", c.node(1).log());
    let stopping = next_notice(&sock);
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
}

#[test]
fn log_lines_are_json_objects_with_log_format_json() {
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--log-format", "json", "--log-level", "debug"])
        .env("RUST_LOG", "")
        .build();
    c.start(1);
    c.wait_leader(0);
    wait_for("a few log lines", WAIT, || {
        c.node(1).log().lines().count() >= 3
    });
    assert!(c.stop(1).success(), "{}", c.node(1).log());
    let log = c.node(1).log();
    let mut levels = std::collections::BTreeSet::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["ts", "level", "target", "msg"] {
            assert!(v[field].is_string(), "{field} missing: {line}");
        }
        levels.insert(v["level"].as_str().unwrap().to_string());
    }
    assert!(levels.contains("INFO"), "{levels:?}");
    assert!(levels.contains("DEBUG"), "--log-level debug: {levels:?}");
}

#[test]
fn every_packaged_binary_has_a_version_completions_and_a_man_page() {
    for name in ["shoald", "shoalctl", "shoal-inspect"] {
        let version = run(cmd(name, &["--version"]), None, WAIT);
        assert_eq!(version.code, 0, "{name}: {}", version.err);
        assert!(
            version.out.starts_with(&format!("{name} ")),
            "{name}: {}",
            version.out
        );
        for (what, expect) in [
            ("bash", format!("_{}()", name.replace('-', "__"))),
            ("zsh", format!("#compdef {name}")),
            ("fish", "complete -c".to_string()),
            ("man", format!(".TH {name} 1")),
        ] {
            let o = run(cmd(name, &["--generate", what]), None, WAIT);
            assert_eq!(o.code, 0, "{name} --generate {what}: {}", o.err);
            assert!(
                o.out.contains(&expect),
                "{name} --generate {what}: {}",
                o.out
            );
        }
        let bad = run(cmd(name, &["--generate", "tcsh"]), None, WAIT);
        assert_eq!(bad.code, 2, "{name}");
        assert!(bad.err.contains("not `tcsh`"), "{name}: {}", bad.err);
    }
}

/// The unit file names what shoald needs; `systemd-analyze verify` reads it where systemd is
/// installed (the unit's binary is checked by the package test, which installs it).
#[test]
fn the_systemd_unit_is_of_type_notify_and_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/systemd/shoald.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "User=shoal",
        "ExecStart=/usr/bin/shoald --config /etc/shoal/shoald.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/shoal",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}
