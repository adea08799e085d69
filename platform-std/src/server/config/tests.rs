use super::*;
use crate::server::clients::ClientLimits;
use crate::server::net::PeerLimits;
use crate::storage::space::SpaceLimits;
use crate::storage::FsyncMode;
#[test]
fn members_parse_with_and_without_client_addr() {
    let m = parse_members("1=127.0.0.1:7001, 2=127.0.0.1:7011/127.0.0.1:9000").unwrap();
    assert_eq!(m[0].client_addr, "127.0.0.1:7002");
    assert_eq!(m[1].client_addr, "127.0.0.1:9000");
    assert!(parse_members("1=a:1,1=b:2").unwrap_err().contains("twice"));
    assert!(parse_members("x=a:1").is_err());
}

#[test]
fn defaults_make_a_single_node_cluster() {
    let c = ServerConfig::resolve(Flags::default()).unwrap();
    assert_eq!(c.node_id, 1);
    assert_eq!(c.initial_members.len(), 1);
    assert_eq!(c.initial_members[0].raft_addr, "127.0.0.1:7001");
    assert_eq!(c.fsync, FsyncMode::Always);
    assert_eq!((c.kv.event_slots, c.kv.event_bytes), (65536, 8 << 20));
    assert!(c.prefill_segments);
    assert!(c.shared_sync);
    assert!(c.quiesce);
}

#[test]
fn segment_prefill_can_be_turned_off_by_flag_or_file() {
    assert!(
        !resolve_args(&["--prefill-segments", "false"])
            .unwrap()
            .prefill_segments
    );
    assert!(
        !resolve_file("prefill_segments = false\n")
            .unwrap()
            .prefill_segments
    );
    let bad = Flags::try_parse_from(["shoald", "--prefill-segments", "maybe"]);
    assert!(bad.is_err());
}

#[test]
fn transaction_size_flag_and_file_key() {
    let max_txn_ops = |c: Result<ServerConfig, String>| c.unwrap().kv.max_txn_ops;
    assert_eq!(max_txn_ops(resolve_args(&[])), shoal_kv::MAX_TXN_OPS);
    assert_eq!(max_txn_ops(resolve_args(&["--kv-max-txn-ops", "5"])), 5);
    assert_eq!(max_txn_ops(resolve_file("kv_max_txn_ops = 9\n")), 9);
}

#[test]
fn max_leases_flag_and_file_key() {
    let max_leases = |c: Result<ServerConfig, String>| c.unwrap().kv.max_leases;
    assert_eq!(max_leases(resolve_args(&[])), 1 << 16);
    assert_eq!(max_leases(resolve_args(&["--kv-max-leases", "7"])), 7);
    assert_eq!(max_leases(resolve_file("kv_max_leases = 3\n")), 3);
}

#[test]
fn watch_history_flags_and_file_keys() {
    let f = Flags::try_parse_from(["shoald", "--kv-event-slots", "1000", "--kv-event-mb", "2"])
        .unwrap();
    let c = ServerConfig::resolve(f).unwrap();
    assert_eq!((c.kv.event_slots, c.kv.event_bytes), (1000, 2 << 20));
    let (_dir, f) = file_flags("kv_event_slots = 7\nkv_event_mb = 3\n");
    let c = ServerConfig::resolve(f).unwrap();
    assert_eq!((c.kv.event_slots, c.kv.event_bytes), (7, 3 << 20));
    let zero = Flags::try_parse_from(["shoald", "--kv-event-mb", "0"]).unwrap();
    assert!(ServerConfig::resolve(zero)
        .unwrap_err()
        .contains("--kv-event-mb"));
}

#[test]
fn the_nodes_watch_history_is_shared_out_over_its_groups() {
    let c = resolve_args(&[]).unwrap();
    assert_eq!(c.kv_events_node_bytes, 128 << 20);
    // Up to sixteen groups keep the full 8 MiB each; sixty-four share 128 MiB.
    assert_eq!(c.group_kv_limits(16).event_bytes, 8 << 20);
    let l = c.group_kv_limits(64);
    assert_eq!((l.event_bytes, l.event_slots), (2 << 20, 1 << 14));
    // The share moves at powers of two only: 33 to 64 groups get the same.
    assert_eq!(c.group_kv_limits(33).event_bytes, 2 << 20);
    assert_eq!(c.group_kv_limits(32).event_bytes, 4 << 20);
    // Never below one largest key and value, nor 1024 events.
    let l = c.group_kv_limits(100_000);
    assert_eq!(l.event_bytes, c.kv.max_key_bytes + c.kv.max_value_bytes);
    assert_eq!(l.event_slots, 1024);
    let off = resolve_args(&["--kv-events-node-mb", "0"]).unwrap();
    assert_eq!(off.group_kv_limits(1000).event_bytes, 8 << 20);
    let file = resolve_file("kv_events_node_mb = 32\n").unwrap();
    assert_eq!(file.group_kv_limits(8).event_bytes, 4 << 20);
    assert!(resolve_args(&["--kv-events-node-mb", "-1"]).is_err());
}

/// A config file holding `toml`, in a directory that lasts as long as the guard.
fn config_file(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoald.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// `shoald --config FILE` with FILE holding `toml`.
fn file_flags(toml: &str) -> (tempfile::TempDir, Flags) {
    let (dir, path) = config_file(toml);
    (
        dir,
        Flags::try_parse_from(["shoald", "--config", &path]).unwrap(),
    )
}

/// The configuration of a file holding `toml` and no flags.
fn resolve_file(toml: &str) -> Result<ServerConfig, String> {
    let (_dir, f) = file_flags(toml);
    ServerConfig::resolve(f)
}

fn resolve_args(args: &[&str]) -> Result<ServerConfig, String> {
    let mut all = vec!["shoald"];
    all.extend_from_slice(args);
    ServerConfig::resolve(Flags::try_parse_from(all).map_err(|e| e.to_string())?)
}

#[test]
fn durations_take_units_in_flags_and_file_alike() {
    let c = resolve_args(&[
        "--election-timeout",
        "2s",
        "--heartbeat-interval",
        "250ms",
        "--snapshot-interval",
        "1h",
        "--compact-delay",
        "1500",
    ])
    .unwrap();
    assert_eq!(c.raft.election_timeout_ms, 2000);
    assert_eq!(c.raft.heartbeat_interval_ms, 250);
    assert_eq!(c.raft.snapshot_interval_ms, 3_600_000);
    assert_eq!(c.compact_delay, Duration::from_millis(1500));
    let (_dir, path) = config_file(
        "election_timeout = \"3s\"\nheartbeat_interval = 300\nadmin_request_timeout = \"2m\"\n",
    );
    let c = resolve_args(&["--config", &path]).unwrap();
    assert_eq!(c.raft.election_timeout_ms, 3000);
    assert_eq!(c.raft.heartbeat_interval_ms, 300);
    assert_eq!(c.admin_limits.request_timeout, Duration::from_secs(120));
    // A flag beats the file.
    let c = resolve_args(&["--config", &path, "--election-timeout", "1s"]).unwrap();
    assert_eq!(c.raft.election_timeout_ms, 1000);
    let e = resolve_args(&["--election-timeout", "soon"]).unwrap_err();
    assert!(e.contains("not a duration"), "{e}");
}

#[test]
fn wrong_configurations_are_refused_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["--kv-arena-mb", "0"], "--kv-arena-mb must be at least 1"),
        (&["--kv-max-nodes", "0"], "--kv-max-nodes"),
        (&["--kv-event-mb", "0"], "--kv-event-mb"),
        (&["--kv-max-txn-ops", "0"], "--kv-max-txn-ops"),
        (&["--kv-max-txn-ops", "65"], "--kv-max-txn-ops"),
        (&["--keep-snapshots", "0"], "--keep-snapshots"),
        (&["--heartbeat-interval", "600ms"], "--heartbeat-interval"),
        (&["--election-timeout", "0"], "--election-timeout"),
        (&["--admin-max-connections", "0"], "--admin-max-connections"),
        (
            &["--client-max-connections", "0"],
            "--client-max-connections must be at least 1",
        ),
        (
            &["--client-idle-timeout", "0s"],
            "--client-idle-timeout must be above zero",
        ),
        (
            &["--client-max-request-mb", "0"],
            "--client-max-request-mb must be at least 1",
        ),
        (
            &["--client-max-answer-mb", "16"],
            "--client-max-answer-mb 16 is not below",
        ),
        (
            &["--client-max-watches", "0"],
            "--client-max-watches must be at least 1",
        ),
        (
            &["--peer-max-handshakes", "0"],
            "--peer-max-handshakes must be at least 1",
        ),
        (
            &["--peer-handshake-timeout", "0"],
            "--peer-handshake-timeout must be above zero",
        ),
        (
            &["--client-addr", "127.0.0.1:7001"],
            "--raft-addr and --client-addr are both 127.0.0.1:7001",
        ),
        (
            &["--initial-members", "1=127.0.0.1:7001,2=127.0.0.1:7001"],
            "members 1 and 2 both use 127.0.0.1:7001",
        ),
        (
            &[
                "--initial-members",
                "1=127.0.0.1:7001,2=127.0.0.1:7011/127.0.0.1:7002",
            ],
            "both use 127.0.0.1:7002",
        ),
        (&["--node-id", "0"], "reserved"),
        (&["--segment-mb", "0"], "--segment-mb 0 is outside"),
        (&["--segment-mb", "4096"], "--segment-mb 4096 is outside"),
        (
            &["--space-quota-mb", "100", "--segment-mb", "64"],
            "cannot hold two log segments",
        ),
        (
            &["--space-recheck-interval", "0"],
            "--space-recheck-interval",
        ),
        (&["--accept-backoff-max", "1ms"], "--accept-backoff-max"),
    ];
    for (args, want) in cases {
        let e = resolve_args(args).unwrap_err();
        assert!(e.contains(want), "{args:?}: {e}");
    }
    for (toml, want) in [
        ("kv_arena_mb = 0\n", "--kv-arena-mb"),
        ("no_such_key = 1\n", "no_such_key"),
    ] {
        let e = resolve_file(toml).unwrap_err();
        assert!(e.contains(want), "{toml:?}: {e}");
    }
}

#[test]
fn space_and_retry_limits_by_flag_and_file() {
    let c = resolve_args(&[]).unwrap();
    assert_eq!(c.segment_bytes, 64 << 20);
    assert_eq!(c.space, SpaceLimits::default());
    assert_eq!(c.raft.snapshot_retry_ms, 10_000);
    assert_eq!(c.accept_backoff_max, Duration::from_secs(1));
    let c = resolve_args(&[
        "--segment-mb",
        "2",
        "--space-reserve-mb",
        "0",
        "--space-quota-mb",
        "20",
        "--space-recheck-interval",
        "250ms",
        "--snapshot-retry-interval",
        "2s",
        "--accept-backoff-max",
        "100ms",
    ])
    .unwrap();
    assert_eq!(c.segment_bytes, 2 << 20);
    assert_eq!(
        c.space,
        SpaceLimits {
            reserve_bytes: 0,
            quota_bytes: 20 << 20,
            recheck: Duration::from_millis(250),
        }
    );
    assert_eq!(c.raft.snapshot_retry_ms, 2000);
    assert_eq!(c.accept_backoff_max, Duration::from_millis(100));
    let c = resolve_file("segment_mb = 8\nspace_reserve_mb = 1\n").unwrap();
    assert_eq!((c.segment_bytes, c.space.reserve_bytes), (8 << 20, 1 << 20));
}

#[test]
fn client_and_peer_limits_from_flags_and_file() {
    let c = resolve_args(&[]).unwrap();
    assert_eq!(c.client_limits, ClientLimits::default());
    assert_eq!(c.peer_limits, PeerLimits::default());
    let c = resolve_args(&[
        "--client-max-connections",
        "10",
        "--client-idle-timeout",
        "1m",
        "--client-max-request-mb",
        "1",
        "--client-max-batch-keys",
        "7",
        "--peer-handshake-timeout",
        "500ms",
    ])
    .unwrap();
    assert_eq!(c.client_limits.max_connections, 10);
    assert_eq!(c.client_limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.client_limits.max_request_bytes, 1 << 20);
    assert_eq!(c.client_limits.max_batch_keys, 7);
    assert_eq!(c.peer_limits.handshake_timeout, Duration::from_millis(500));
    let c = resolve_file(
        "client_buffers_mb = 16\nclient_max_watches = 5\npeer_max_connections = 3\nclient_frame_timeout = \"3s\"\n",
    )
    .unwrap();
    assert_eq!(c.client_limits.buffer_bytes, 16 << 20);
    assert_eq!(c.client_limits.max_watches, 5);
    assert_eq!(c.client_limits.frame_timeout, Duration::from_secs(3));
    assert_eq!(c.peer_limits.max_connections, 3);
}

#[test]
fn the_first_segment_size_has_a_default_a_flag_and_bounds() {
    let c = resolve_args(&[]).unwrap();
    assert_eq!(c.segment_initial_bytes, 32 << 10);
    let c = resolve_args(&["--segment-initial-kb", "256"]).unwrap();
    assert_eq!(c.segment_initial_bytes, 256 << 10);
    let e = resolve_args(&["--segment-initial-kb", "2"]).unwrap_err();
    assert!(e.contains("--segment-initial-kb 2"), "{e}");
    let e = resolve_args(&["--segment-mb", "1", "--segment-initial-kb", "2048"]).unwrap_err();
    assert!(e.contains("at most --segment-mb"), "{e}");
}

#[test]
fn switches_work_bare_and_with_a_value() {
    let c = resolve_args(&["--join", "--snapshot-on-shutdown"]).unwrap();
    assert!(c.join && c.snapshot_on_shutdown && !c.allow_addr_change);
    let c = resolve_args(&["--join=false", "--allow-addr-change"]).unwrap();
    assert!(!c.join && c.allow_addr_change);
    assert!(resolve_file("join = true\n").unwrap().join);
}

#[test]
fn quiescence_can_be_turned_off_by_flag_or_file() {
    assert!(!resolve_args(&["--quiesce", "false"]).unwrap().quiesce);
    assert!(!resolve_file("quiesce = false\n").unwrap().quiesce);
    let bad = Flags::try_parse_from(["shoald", "--quiesce", "sometimes"]);
    assert!(bad.unwrap_err().to_string().contains("sometimes"));
}

#[test]
fn leader_balance_runs_every_two_seconds_unless_set_or_turned_off() {
    let every = |c: ServerConfig| c.leader_balance_interval;
    assert_eq!(
        every(resolve_args(&[]).unwrap()),
        Some(Duration::from_secs(2))
    );
    let set = resolve_args(&["--leader-balance-interval", "500ms"]).unwrap();
    assert_eq!(every(set), Some(Duration::from_millis(500)));
    assert_eq!(
        every(resolve_args(&["--leader-balance-interval", "0"]).unwrap()),
        None
    );
    assert_eq!(
        every(resolve_file("leader_balance_interval = \"10s\"\n").unwrap()),
        Some(Duration::from_secs(10))
    );
    let bad = Flags::try_parse_from(["shoald", "--leader-balance-interval", "often"]);
    assert!(bad.unwrap_err().to_string().contains("often"));
    // By load too, unless turned off.
    assert!(resolve_args(&[]).unwrap().leader_balance_load);
    assert!(
        !resolve_args(&["--leader-balance-load", "false"])
            .unwrap()
            .leader_balance_load
    );
    assert!(
        !resolve_file("leader_balance_load = false\n")
            .unwrap()
            .leader_balance_load
    );
}

#[test]
fn the_advertised_client_address_is_one_clients_can_be_sent_to() {
    // By default the listen address is advertised, and the single-node member list names it.
    let c = resolve_args(&["--client-addr", "127.0.0.1:9002"]).unwrap();
    assert_eq!(c.advertise_client_addr, "127.0.0.1:9002");
    assert_eq!(c.initial_members[0].client_addr, "127.0.0.1:9002");
    // Listening on every address needs the address clients use.
    let e = resolve_args(&["--client-addr", "0.0.0.0:9002"]).unwrap_err();
    assert!(e.contains("--advertise-client-addr"), "{e}");
    let e = resolve_args(&["--client-addr", "[::]:9002"]).unwrap_err();
    assert!(e.contains("listens on every address"), "{e}");
    let c = resolve_args(&[
        "--client-addr",
        "0.0.0.0:9002",
        "--advertise-client-addr",
        "db1.example:9002",
    ])
    .unwrap();
    assert_eq!(c.client_addr, "0.0.0.0:9002");
    assert_eq!(c.advertise_client_addr, "db1.example:9002");
    assert_eq!(c.initial_members[0].client_addr, "db1.example:9002");
    // The file takes it too.
    let c =
        resolve_file("client_addr = \"0.0.0.0:9002\"\nadvertise_client_addr = \"10.0.0.5:9002\"\n")
            .unwrap();
    assert_eq!(c.advertise_client_addr, "10.0.0.5:9002");
    for (bad, says) in [
        ("0.0.0.0:9002", "not an address clients can be sent to"),
        ("db1", "no port"),
    ] {
        let e = resolve_args(&["--advertise-client-addr", bad]).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn raft_cpu_is_off_unless_asked_and_refuses_what_it_cannot_read() {
    use crate::affinity::RaftCpu;
    assert_eq!(resolve_args(&[]).unwrap().raft_cpu, RaftCpu::Off);
    assert_eq!(
        resolve_args(&["--raft-cpu", "auto"]).unwrap().raft_cpu,
        RaftCpu::Auto
    );
    assert_eq!(
        resolve_file("raft_cpu = \"1\"\n").unwrap().raft_cpu,
        RaftCpu::Cpu(1)
    );
    let e = resolve_args(&["--raft-cpu", "fast"]).unwrap_err();
    assert!(e.contains("expected `off`, `auto` or a CPU number"), "{e}");
}

#[test]
fn metrics_group_series_default_to_256_and_take_all() {
    use crate::server::config::resolve::DEFAULT_METRICS_GROUP_SERIES;
    assert_eq!(DEFAULT_METRICS_GROUP_SERIES, 256);
    let of = |args: &[&str]| resolve_args(args).map(|c| c.metrics_group_series);
    assert_eq!(of(&[]), Ok(256));
    assert_eq!(of(&["--metrics-group-series", "0"]), Ok(0));
    assert_eq!(of(&["--metrics-group-series", "all"]), Ok(usize::MAX));
    let file = resolve_file("metrics_group_series = 10\n").unwrap();
    assert_eq!(file.metrics_group_series, 10);
    let file = resolve_file("metrics_group_series = \"all\"\n").unwrap();
    assert_eq!(file.metrics_group_series, usize::MAX);
    let e = of(&["--metrics-group-series", "many"]).unwrap_err();
    assert!(e.contains("expected a number of groups"), "{e}");
}

#[test]
fn raft_threads_default_to_the_cores_and_are_checked() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(resolve_args(&[]).unwrap().raft_threads, cores.min(64));
    assert_eq!(
        resolve_args(&["--raft-threads", "3"]).unwrap().raft_threads,
        3
    );
    assert_eq!(resolve_file("raft_threads = 1\n").unwrap().raft_threads, 1);
    let e = resolve_args(&["--raft-threads", "0"]).unwrap_err();
    assert!(e.contains("at least 1"), "{e}");
    let e = resolve_args(&["--raft-threads", "65"]).unwrap_err();
    assert!(e.contains("more than 64"), "{e}");
}
