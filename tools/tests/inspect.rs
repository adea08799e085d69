//! `shoal-inspect` end to end: data dirs written through `FileStorage` with real DtKV commands,
//! damaged on purpose, read by the binary; export → import → restore; flash images.

use std::path::{Path, PathBuf};

use shoal_core::entry::EntryRef;
use shoal_core::io::StateMachine;
use shoal_core::membership::Membership;
use shoal_core::record::CRC32C;
use shoal_core::storage::{LogView, Storage};
use shoal_core::types::{EntryKind, HardState, SnapshotMeta};
use shoal_kv::{Command, KvLimits, Op, Pairs};
use shoal_std::storage::scan::Identity;
use shoal_std::storage::{DataDir, FileStorage, FsyncMode, StorageOptions};
use shoal_testkit::cli::{inspect, inspect_into_closed_pipe, inspect_json};
use shoal_testkit::cluster::{log_segments, segment_first_index};
use shoal_tools::state::{rebuild, snapshot_bytes, ReplayEntry};

fn opts() -> StorageOptions {
    StorageOptions {
        fsync: FsyncMode::Never,
        segment_bytes: 4096,
        ..StorageOptions::default()
    }
}

fn cmd(client: u64, seq: u64, op: Op<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let c = Command {
        client_id: client,
        seq,
        time_ms: 1000 + seq,
        op,
    };
    let n = c.encode(&mut buf).expect("the command fits");
    buf.truncate(n);
    buf
}

fn config(voters: &[u64]) -> Vec<u8> {
    postcard::to_stdvec(&Membership::new(voters, &[]).unwrap()).unwrap()
}

/// The entries every test dir holds: a config, a noop, then DtKV writes (enough to fill
/// several 4 KiB segments), then a membership change to joint.
fn entries() -> Vec<ReplayEntry> {
    let mut out = Vec::new();
    let mut push = |kind: EntryKind, term: u64, data: Vec<u8>| {
        let index = out.len() as u64 + 1;
        out.push(ReplayEntry {
            index,
            term,
            kind,
            data,
        });
    };
    push(EntryKind::Config, 1, config(&[1, 2, 3]));
    push(EntryKind::Noop, 1, Vec::new());
    push(EntryKind::Normal, 1, cmd(7, 1, Op::Mkdir { key: b"app" }));
    push(
        EntryKind::Normal,
        1,
        cmd(7, 2, Op::Mkdir { key: b"app.db" }),
    );
    push(
        EntryKind::Normal,
        1,
        cmd(
            7,
            3,
            Op::Put {
                key: b"app.db.url",
                value: b"postgres://db:5432/app",
            },
        ),
    );
    for i in 0..60u64 {
        let key = format!("app.k{:03}", i);
        let value = format!("value-{}-{}", i, "x".repeat(200));
        push(
            EntryKind::Normal,
            2,
            cmd(
                8,
                i + 1,
                Op::Put {
                    key: key.as_bytes(),
                    value: value.as_bytes(),
                },
            ),
        );
    }
    push(
        EntryKind::Normal,
        2,
        cmd(
            9,
            1,
            Op::CompareAndSet {
                key: b"app.k000",
                expect: None,
                value: b"b",
            },
        ),
    );
    push(
        EntryKind::Normal,
        2,
        cmd(
            9,
            2,
            Op::TryLock {
                key: b"app.lk",
                lease_ms: 5000,
                wait_ms: 0,
            },
        ),
    );
    let pairs: [(&[u8], &[u8]); 2] = [(b"app.b1", b"one"), (b"app.b2", b"two")];
    push(
        EntryKind::Normal,
        2,
        cmd(9, 3, Op::BatchPut(Pairs::new(&pairs))),
    );
    push(EntryKind::Normal, 2, cmd(0, 0, Op::Expire));
    let old = Membership::new(&[1, 2, 3], &[]).unwrap();
    let joint = old
        .to_joint(&Membership::new(&[1, 2, 3, 4], &[]).unwrap())
        .unwrap();
    push(EntryKind::Config, 2, postcard::to_stdvec(&joint).unwrap());
    out
}

const CLUSTER: u64 = 0xC1;

/// Write `entries` to `st`, then the hard state (`term`, vote 1, `commit`), then a snapshot
/// at `snap_at` if asked: the same durable state for a data dir and a flash image.
fn fill(
    st: &mut impl Storage,
    entries: &[ReplayEntry],
    term: u64,
    commit: u64,
    snap_at: Option<u64>,
) {
    append_all(st, entries);
    st.save_hard_state(&HardState {
        term,
        vote: 1,
        commit,
    })
    .unwrap();
    st.sync().unwrap();
    if let Some(at) = snap_at {
        install_snapshot(st, entries, at);
    }
}

/// Append `entries` to `st` (nothing synced).
fn append_all(st: &mut impl Storage, entries: &[ReplayEntry]) {
    for e in entries {
        st.append(&EntryRef {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: &e.data,
        })
        .unwrap();
    }
}

/// Install a snapshot at `at` of `all` (built by replaying DtKV), membership voters [1,2,3].
fn install_snapshot(st: &mut impl Storage, all: &[ReplayEntry], at: u64) {
    let upto: Vec<ReplayEntry> = all.iter().filter(|e| e.index <= at).cloned().collect();
    let data = rebuild(KvLimits::server(), None, &upto, |kv| snapshot_bytes(kv))
        .unwrap()
        .unwrap();
    let meta = SnapshotMeta {
        index: at,
        term: all[at as usize - 1].term,
        membership: Membership::new(&[1, 2, 3], &[]).unwrap(),
        size_bytes: data.len() as u64,
        crc: CRC32C.checksum(&data),
    };
    st.snapshot_begin(&meta).unwrap();
    st.snapshot_write(0, &data).unwrap();
    st.snapshot_finish().unwrap();
    st.sync().unwrap();
}

/// A new data dir of node 1 of [`CLUSTER`].
fn bootstrap(dir: &Path) -> DataDir {
    DataDir::bootstrap(
        dir,
        &Identity {
            cluster_id: CLUSTER,
            node_id: 1,
            raft_addr: "127.0.0.1:7001".into(),
        },
    )
    .unwrap()
}

/// Write a data dir: identity, group 0 with every entry of [`entries`], hard state term 3,
/// commit = `commit`; optionally a snapshot at `snap_at` built by replaying DtKV.
fn make_dir(dir: &Path, commit: u64, snap_at: Option<u64>) -> Vec<ReplayEntry> {
    let mut st = bootstrap(dir).open_group(0, &opts()).unwrap();
    let all = entries();
    fill(&mut st, &all, 3, commit, snap_at);
    all
}

/// A temp dir holding `n1`, a data dir made by [`make_dir`]; the entries written.
fn node_dir(commit: u64, snap_at: Option<u64>) -> (tempfile::TempDir, PathBuf, Vec<ReplayEntry>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let all = make_dir(&dir, commit, snap_at);
    (tmp, dir, all)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = inspect(args);
    (o.code, o.out, o.err)
}

/// `import FILE --data-dir DIR --node-id ID --members MEMBERS`.
fn import_args<'a>(
    file: &'a Path,
    dir: &'a Path,
    node_id: &'a str,
    members: &'a str,
) -> Vec<&'a str> {
    vec![
        "import",
        s(file),
        "--data-dir",
        s(dir),
        "--node-id",
        node_id,
        "--members",
        members,
    ]
}

/// `out` holds every one of `needles`.
fn assert_holds(out: &str, needles: &[&str]) {
    for n in needles {
        assert!(out.contains(n), "no `{}` in:\n{}", n, out);
    }
}

/// `args` is refused as a usage error (exit 2) whose message says `what`.
fn refused(args: &[&str], what: &str) {
    let (code, _, err) = run(args);
    assert_eq!(code, 2, "{}", err);
    assert!(err.contains(what), "{}", err);
}

/// `verify --json` with `args` exits with `code`; its first finding.
fn first_finding(args: &[&str], code: i32) -> serde_json::Value {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    let (got, v) = inspect_json(&a);
    assert_eq!(got, code, "{}", v);
    v["problems"][0].clone()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    log_segments(dir, 0)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn summary_and_log_show_what_was_written() {
    let (_tmp, dir, all) = node_dir(60, None);
    let (code, v) = inspect_json(&["summary", s(&dir)]);
    assert_eq!(code, 0, "{}", v);
    assert_eq!(v["identity"]["cluster_id"], CLUSTER);
    assert_eq!(v["identity"]["node_id"], 1);
    assert_eq!(v["identity"]["raft_addr"], "127.0.0.1:7001");
    let g = &v["groups"][0];
    assert_eq!(g["hard_state"]["term"], 3);
    assert_eq!(g["hard_state"]["commit"], 60);
    assert_eq!(g["first"][0], 1);
    assert_eq!(g["last"][0], all.len() as u64);
    assert_eq!(g["last"][1], 2);
    assert!(g["segments"].as_array().unwrap().len() > 2, "{}", g);
    assert_eq!(v["ok"], true);

    let (code, out, _) = run(&["summary", s(&dir)]);
    assert_eq!(code, 0);
    assert!(out.contains("health     OK"), "{}", out);

    let (code, out, err) = run(&["log", s(&dir)]);
    assert_eq!(code, 0, "{}", err);
    assert_holds(
        &out,
        &[
            "config ? → voters [1,2,3]",
            "put app.db.url = \"postgres://db:5432/app\"",
            "cas app.k000 expect absent -> \"b\"",
            "lock app.lk lease 5s",
            "expire @",
            "config voters [1,2,3] → joint [1,2,3]+[1,2,3,4]",
        ],
    );
    let (_, v) = inspect_json(&["log", s(&dir), "--from", "5", "--limit", "2"]);
    let lines = v["groups"][0]["entries"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 5);
    assert_eq!(lines[0]["command"]["op"], "put");
    assert_eq!(lines[0]["command"]["key"], "app.db.url");

    let (code, out, _) = run(&["entry", s(&dir), "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("postgres://db:5432/app"), "{}", out);
    assert!(out.contains("00000000  "), "hex dump: {}", out);
}

#[test]
fn a_healthy_dir_verifies_clean() {
    let (_tmp, dir, _) = node_dir(60, Some(30));
    let (code, out, _) = run(&["verify", s(&dir)]);
    assert_eq!(code, 0, "{}", out);
    assert!(out.contains("OK"), "{}", out);
}

#[test]
fn a_flipped_bit_is_found_with_file_and_offset() {
    let (_tmp, dir, _) = node_dir(60, None);
    let seg = segments(&dir)[1].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip a bit inside the second record (the first starts right after the 30-byte header).
    let first_len = u32::from_le_bytes(bytes[30..34].try_into().unwrap()) as usize + 8;
    let second = 30 + first_len;
    bytes[second + 12] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let p = &first_finding(&[s(&dir)], 1);
    assert_eq!(p["severity"], "error");
    assert_eq!(p["file"], s(&seg));
    assert_eq!(p["offset"], second as u64, "{}", p);
}

#[test]
fn a_truncated_segment_is_found() {
    let (_tmp, dir, _) = node_dir(60, None);
    let seg = segments(&dir)[0].clone();
    let bytes = std::fs::read(&seg).unwrap();
    let first_len = u32::from_le_bytes(bytes[30..34].try_into().unwrap()) as usize + 8;
    let cut = 30 + first_len + 7; // in the middle of the second record
    std::fs::write(&seg, &bytes[..cut]).unwrap();
    let p = &first_finding(&[s(&dir)], 1);
    assert_eq!(p["file"], s(&seg), "{}", p);
    assert_eq!(p["offset"], (30 + first_len) as u64, "{}", p);
}

#[test]
fn a_deleted_segment_is_found() {
    let (_tmp, dir, _) = node_dir(60, None);
    let segs = segments(&dir);
    assert!(segs.len() >= 3);
    std::fs::remove_file(&segs[1]).unwrap();
    let p = &first_finding(&[s(&dir)], 1);
    assert_eq!(p["file"], s(&segs[2]), "{}", p);
    assert_eq!(p["offset"], 0);
    let missing_from = segment_first_index(&segs[1]);
    assert_eq!(p["expected"], format!("first index {}", missing_from));
}

#[test]
fn a_torn_tail_is_a_warning() {
    let (_tmp, dir, _) = node_dir(60, None);
    let seg = segments(&dir).pop().unwrap();
    // The scanner says where the records end; write half a record there.
    let scan = shoal_std::storage::scan::scan_segment(&seg).unwrap();
    let end = scan.end as usize;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[end..end + 6].copy_from_slice(&[40, 0, 0, 0, 1, 0x55]);
    std::fs::write(&seg, &bytes).unwrap();
    let p = &first_finding(&[s(&dir)], 0);
    assert_eq!(p["severity"], "warning");
    assert_eq!(p["offset"], end as u64);
    assert!(p["detail"].as_str().unwrap().contains("torn tail"));
}

#[test]
fn a_hard_state_behind_its_log_is_a_warning_naming_the_term_the_node_takes_up() {
    // A power cut kept the log's last entries (term 2) and lost the hard state saved with
    // them: the one on disk is still in term 1. The node raises it when it starts.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let mut st = bootstrap(&dir).open_group(0, &opts()).unwrap();
    let all = entries();
    let last = all.last().unwrap();
    assert!(last.term >= 2, "the log reaches a later term");
    fill(&mut st, &all, 1, 10, None);
    drop(st);
    let p = &first_finding(&[s(&dir)], 0);
    assert_eq!(p["severity"], "warning", "{}", p);
    assert!(p["file"].as_str().unwrap().ends_with("hardstate"), "{}", p);
    assert_eq!(p["expected"], format!("term ≥ {}", last.term));
    assert_eq!(p["found"], "1");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("entry {}", last.index))
            && detail.contains(&format!("takes up term {}", last.term)),
        "{detail}"
    );
}

#[test]
fn export_then_import_rebuilds_every_key() {
    let (tmp, dir, all) = node_dir(60, Some(30));
    let out = tmp.path().join("backup.shoal");
    let (code, v) = inspect_json(&["export", s(&dir), "--out", s(&out), "--upto", "last"]);
    assert_eq!(code, 0, "{}", v);
    assert_eq!(v["header"]["index"], all.len() as u64);
    assert_eq!(v["from_snapshot"], 30);
    // The joint config at the end is the membership at the exported index.
    assert_eq!(v["header"]["membership"]["joint"], true);

    // The export's digest is the state a full replay gives.
    let expected = rebuild(KvLimits::server(), None, &all, |kv| kv.digest()).unwrap();
    assert_eq!(v["header"]["digest"], expected);

    // A second export to the same file is refused.
    refused(&["export", s(&dir), "--out", s(&out)], "already exists");

    let (code, snap) = inspect_json(&["snapshot", s(&out), "--dump"]);
    assert_eq!(code, 0);
    let keys = snap["keys"].as_array().unwrap();
    let url = keys.iter().find(|k| k["key"] == "app.db.url").unwrap();
    assert_eq!(url["value"], "postgres://db:5432/app");

    let new_dir = tmp.path().join("rebuilt");
    let members = "2=127.0.0.1:7102,5=127.0.0.1:7105";
    let (code, out_text, err) = run(&import_args(&out, &new_dir, "2", members));
    assert_eq!(code, 0, "{}{}", out_text, err);
    let (code, _, _) = run(&["verify", s(&new_dir)]);
    assert_eq!(code, 0);

    // Refuses to build over it again.
    refused(
        &import_args(&out, &new_dir, "2", "2=127.0.0.1:7102"),
        "not empty",
    );

    // Open it as shoald would and restore the state.
    let dd = DataDir::open(
        &new_dir,
        &Identity {
            cluster_id: CLUSTER,
            node_id: 2,
            raft_addr: "127.0.0.1:7102".into(),
        },
        Default::default(),
    )
    .unwrap();
    let st: FileStorage = dd.open_group(0, &StorageOptions::default()).unwrap();
    let meta = st.snapshot_meta().unwrap();
    assert_eq!(meta.index, all.len() as u64);
    assert_eq!(meta.membership, Membership::new(&[2, 5], &[]).unwrap());
    assert!(st.hard_state().term >= meta.term);
    assert_eq!(st.last_index(), meta.index);
    let mut data = vec![0u8; meta.size_bytes as usize];
    let mut off = 0;
    while off < data.len() {
        let n = st.snapshot_read(off as u64, &mut data[off..]).unwrap();
        assert!(n > 0);
        off += n;
    }
    let digest = rebuild(KvLimits::server(), Some((&data, meta.index)), &[], |kv| {
        assert_eq!(kv.applied_index(), meta.index);
        for i in 0..60 {
            let key = format!("app.k{:03}", i);
            assert!(kv.get(key.as_bytes()).is_ok(), "{} is missing", key);
        }
        assert_eq!(
            kv.get(b"app.db.url").unwrap().value,
            b"postgres://db:5432/app"
        );
        assert_eq!(kv.get(b"app.b2").unwrap().value, b"two");
        kv.digest()
    })
    .unwrap();
    assert_eq!(digest, expected);
    let book = shoal_std::storage::scan::read_address_book(&new_dir.join("group-0")).unwrap();
    assert_eq!(book.len(), 2);
    assert_eq!(book[1].client_addr, "127.0.0.1:7106");
}

#[test]
fn export_up_to_the_commit_index_leaves_the_tail_out() {
    let (tmp, dir, all) = node_dir(40, Some(30));
    let out = tmp.path().join("b.shoal");
    let (code, v) = inspect_json(&["export", s(&dir), "--out", s(&out)]);
    assert_eq!(code, 0, "{}", v);
    assert_eq!(v["header"]["index"], 40);
    assert_eq!(v["entries_not_exported"], all.len() as u64 - 40);
    let upto: Vec<ReplayEntry> = all.into_iter().filter(|e| e.index <= 40).collect();
    let expected = rebuild(KvLimits::server(), None, &upto, |kv| kv.digest()).unwrap();
    assert_eq!(v["header"]["digest"], expected);
}

#[test]
fn snapshot_command_reads_a_data_dir_snap_file() {
    let (_tmp, dir, _) = node_dir(60, Some(30));
    let snap = std::fs::read_dir(dir.join("group-0/snap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let (code, v) = inspect_json(&["snapshot", s(&snap), "--keys"]);
    assert_eq!(code, 0, "{}", v);
    assert_eq!(v["index"], 30);
    assert_eq!(v["source"], "data_dir");
    assert!(v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key"] == "app.db.url"));
    // Damage the data: the command says where.
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    let (code, _, err) = run(&["snapshot", s(&snap)]);
    assert_eq!(code, 1, "{}", err);
    assert!(err.contains("CRC"), "{}", err);
    let (code, _, _) = run(&["verify", s(&dir)]);
    assert_eq!(code, 1);
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, _) = run(&["verify", "/nonexistent/shoal/dir"]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn snapshot_command_reads_a_data_dirs_current_snapshot() {
    let (tmp, dir, _) = node_dir(60, Some(30));
    let (code, v) = inspect_json(&["snapshot", s(&dir), "--keys"]);
    assert_eq!(code, 0, "{}", v);
    assert_eq!(v["index"], 30);
    assert_eq!(v["source"], "data_dir");
    assert!(v["file"].as_str().unwrap().ends_with(".snap"), "{}", v);
    assert!(v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key"] == "app.db.url"));
    let (code, out, _) = run(&["snapshot", s(&dir)]);
    assert_eq!(code, 0);
    assert!(out.contains("data dir snapshot"), "{}", out);
    // A group the dir does not have, and a dir without a snapshot: usage errors.
    refused(&["snapshot", s(&dir), "--group", "4"], "no group 4");
    let plain = tmp.path().join("n2");
    make_dir(&plain, 60, None);
    refused(&["snapshot", s(&plain)], "has no snapshot");
}

#[test]
fn a_commit_index_past_the_log_is_damage() {
    let (_tmp, dir, all) = node_dir(500, None);
    let p = &first_finding(&[s(&dir)], 1);
    assert!(p["file"].as_str().unwrap().ends_with("hardstate"), "{}", p);
    assert_eq!(p["expected"], format!("commit ≤ {}", all.len()));
    assert_eq!(p["found"], "500");
    let (code, _, err) = run(&["log", s(&dir), "--limit", "1"]);
    assert_eq!(code, 1, "{}", err);
    assert!(err.contains("commit index is past"), "{}", err);
}

mod flash {
    use super::*;
    use shoal_embedded::flash::sim::SimFlash;
    use shoal_embedded::flash::{FlashStorage, Layout};

    const ERASE: usize = 4096;
    const SECTORS: u32 = 24;
    const GEO: &str = "erase=4096,write=4,slot=2";

    /// An image holding the first `n` of [`entries`], hard state term 2 with `commit`, and a
    /// snapshot at `snap_at` if asked, written to `dir/flash.bin`.
    fn image(dir: &Path, n: usize, commit: u64, snap_at: Option<u64>) -> PathBuf {
        let flash: SimFlash<Vec<u8>, ERASE, 4> = SimFlash::new(vec![0u8; ERASE * SECTORS as usize]);
        let layout = Layout::new(0, SECTORS, 2);
        let mut st: FlashStorage<_, 64> = FlashStorage::format(flash, layout).unwrap();
        let all: Vec<ReplayEntry> = entries().into_iter().take(n).collect();
        fill(&mut st, &all, 2, commit, snap_at);
        let path = dir.join("flash.bin");
        std::fs::write(&path, st.into_flash().bytes()).unwrap();
        path
    }

    #[test]
    fn flash_image_summary_log_and_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), 20, 15, None);
        let geo = GEO;
        let (code, v) = inspect_json(&["summary", "--flash", s(&img), "--geometry", geo]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["hard_state"]["commit"], 15);
        assert_eq!(v["entries"], 20);
        assert_eq!(v["last"][0], 20);
        let (code, out, _) = run(&["log", "--flash", s(&img), "--geometry", geo]);
        assert_eq!(code, 0);
        assert!(out.contains("put app.db.url"), "{}", out);
        let (code, out, _) = run(&["verify", "--flash", s(&img), "--geometry", geo]);
        assert_eq!(code, 0, "{}", out);

        // Damage a record in the middle of the ring: recovery refuses it with its address.
        let mut bytes = std::fs::read(&img).unwrap();
        let ring = 6 * ERASE; // 2 hard-state sectors + 2 slots of 2 sectors
        bytes[ring + 200] ^= 0x04;
        std::fs::write(&img, &bytes).unwrap();
        let (code, out, _) = run(&["verify", "--flash", s(&img), "--geometry", geo]);
        assert_eq!(code, 1, "{}", out);
        assert!(out.contains("at offset"), "{}", out);
    }

    /// `args`, then the flags that name the image.
    fn on_image<'a>(img: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend(["--flash", s(img), "--geometry", GEO]);
        v
    }

    #[test]
    fn an_images_summary_log_and_entry_read_like_a_data_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), 20, 15, None);
        let (code, out, _) = run(&on_image(&img, &["summary"]));
        assert_eq!(code, 0);
        assert_holds(
            &out,
            &[
                "hard state   term 2  vote 1  commit 15",
                "ring         1 of 18 sectors live",
                "health     OK",
            ],
        );

        // An image's one group stands at the top level of the JSON.
        let (code, v) = inspect_json(&on_image(&img, &["log", "--from", "5", "--limit", "2"]));
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["group"], 0);
        let lines = v["entries"].as_array().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["command"]["key"], "app.db.url");

        let (code, out, err) = run(&on_image(&img, &["entry", "5"]));
        assert_eq!(code, 0, "{}", err);
        assert_holds(&out, &["postgres://db:5432/app", "00000000  "]);
        let (code, out, _) = run(&on_image(&img, &["entry", "1"]));
        assert_eq!(code, 0);
        assert!(out.contains("config ? → voters [1,2,3]"), "{}", out);
        let (code, v) = inspect_json(&on_image(&img, &["entry", "5"]));
        assert_eq!(code, 0);
        assert_eq!(v["index"], 5);
        assert_eq!(v["command"]["op"], "put");
        assert!(v["payload_hex"].as_str().unwrap().len() > 10);
        assert!(
            v.get("file").is_none(),
            "an image has no record files: {}",
            v
        );
        refused(
            &on_image(&img, &["entry", "99"]),
            "entry 99 is not in the log of group 0",
        );
    }

    #[test]
    fn a_commit_index_past_an_images_log_is_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), 20, 25, None);
        let p = first_finding(&on_image(&img, &[]), 1);
        assert_eq!(p["file"], s(&img));
        assert_eq!(p["expected"], "commit ≤ 20");
        let (code, v) = inspect_json(&["summary", "--flash", s(&img), "--geometry", GEO]);
        assert_eq!(code, 1);
        assert_eq!(v["ok"], false);
        let (code, _, err) = run(&["log", "--flash", s(&img), "--geometry", GEO]);
        assert_eq!(code, 1, "{}", err);
        assert!(err.contains("commit index is past"), "{}", err);
    }

    #[test]
    fn an_images_snapshot_is_shown_exported_and_imported() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), 20, 15, Some(10));
        let (code, v) = inspect_json(&on_image(&img, &["summary"]));
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["snapshot"]["index"], 10);
        assert_eq!(v["snapshot"]["crc_ok"], true);
        assert_eq!(v["snapshots"][0]["current"], true);

        let (code, v) = inspect_json(&on_image(&img, &["snapshot", "--dump"]));
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["source"], "flash_image");
        assert_eq!(v["index"], 10);
        let keys = v["keys"].as_array().unwrap();
        let url = keys.iter().find(|k| k["key"] == "app.db.url").unwrap();
        assert_eq!(url["value"], "postgres://db:5432/app");

        // Export: the snapshot plus the entries up to the commit index.
        let out = tmp.path().join("board.shoal");
        let (code, v) = inspect_json(&on_image(&img, &["export", "--out", s(&out)]));
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["from_snapshot"], 10);
        assert_eq!(v["entries_applied"], 5);
        assert_eq!(v["entries_not_exported"], 5);
        assert_eq!(v["header"]["index"], 15);
        // An image records no identity.
        assert_eq!(v["header"]["cluster_id"], 0);
        let upto: Vec<ReplayEntry> = entries().into_iter().take(15).collect();
        let expected = rebuild(KvLimits::server(), None, &upto, |kv| kv.digest()).unwrap();
        assert_eq!(v["header"]["digest"], expected);

        // Import needs the cluster id the image does not record.
        let new_dir = tmp.path().join("rebuilt");
        let mut import = import_args(&out, &new_dir, "1", "1=127.0.0.1:7101");
        refused(&import, "--cluster-id");
        import.extend(["--cluster-id", "77"]);
        let (code, out_text, err) = run(&import);
        assert_eq!(code, 0, "{}{}", out_text, err);
        let (code, v) = inspect_json(&["summary", s(&new_dir)]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["identity"]["cluster_id"], 77);
        assert_eq!(v["groups"][0]["snapshot"]["index"], 15);
        let (code, v) = inspect_json(&["snapshot", s(&new_dir)]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["digest"], format!("{:#018x}", expected));
    }
}

/// `shoal-inspect ... | head` with the reader gone: a quiet end with the status a shell gives
/// a writer that SIGPIPE ended (141), never a panic (exit 101).
#[test]
fn a_closed_output_pipe_ends_quietly() {
    let (_tmp, dir, _) = node_dir(40, Some(20));
    let d = dir.to_str().unwrap();
    for args in [
        &["summary", d][..],
        &["--json", "summary", d],
        &["log", d],
        &["--json", "verify", d],
    ] {
        let o = inspect_into_closed_pipe(args);
        assert_eq!(o.code, 141, "{o}");
        assert!(o.err.is_empty(), "{o}");
    }
}

/// The data dir's sync journal in `summary` and `verify`.
mod journal {
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    use shoal_std::storage::fs_sync::FsSync;
    use shoal_std::storage::journal::{self, Journal, JOURNAL_FILE};
    use shoal_std::storage::scan::scan_segment;

    use super::*;

    /// The data dir's journal as shoald makes it at start: after the replay.
    fn open_journal(dir: &Path) -> Journal {
        let epoch = journal::replay(dir).unwrap().epoch;
        Journal::new(dir, Arc::new(FsSync::open(dir).unwrap()), epoch)
    }

    /// Group 0 with entries 1..=10 synced in its (one) segment and 11..=30 written in a round
    /// that made them durable through the sync journal; hard state term 3, commit 30.
    /// Returns the segment and the byte range entries 11..=30 take in it.
    fn journaled_dir(dir: &Path) -> (PathBuf, std::ops::Range<u64>) {
        let opts = StorageOptions {
            fsync: FsyncMode::Always,
            segment_bytes: 1 << 20,
            initial_segment_bytes: 1 << 20,
            // No spare to leave the first segment for: the 30 entries stay in one segment.
            prefill_segments: false,
            ..StorageOptions::default()
        };
        let all = entries();
        let mut st = bootstrap(dir).open_group(0, &opts).unwrap();
        fill(&mut st, &all[..10], 3, 10, None);
        let journal = Arc::new(open_journal(dir));
        st.attach_journal(journal.clone());
        append_all(&mut st, &all[10..30]);
        let sync = st.begin_background_sync(true).unwrap().unwrap();
        assert!(sync.journaled());
        journal.sync().unwrap();
        st.save_hard_state(&HardState {
            term: 3,
            vote: 1,
            commit: 30,
        })
        .unwrap();
        st.sync().unwrap();
        drop(st);
        let seg = segments(dir).pop().unwrap();
        let recs: Vec<_> = scan_segment(&seg).unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 30, "one segment holds the 30 entries");
        (seg, recs[10].offset..recs[29].offset + recs[29].len)
    }

    /// `summary` of `dir` succeeds and its text holds every one of `lines`; the text.
    fn summary_holds(dir: &Path, lines: &[&str]) -> String {
        let (code, out, _) = run(&["summary", s(dir)]);
        assert_eq!(code, 0, "{}", out);
        assert_holds(&out, lines);
        out
    }

    /// A power cut that lost the page cache: the segment lacks what only the journal holds.
    fn lose_page_cache(seg: &Path, journaled: &std::ops::Range<u64>) {
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        let zeros = vec![0u8; (journaled.end - journaled.start) as usize];
        f.write_all_at(&zeros, journaled.start).unwrap();
    }

    #[test]
    fn an_export_reads_what_only_the_journal_holds_and_replay_journal_writes_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n1");
        let (seg, journaled) = journaled_dir(&dir);
        lose_page_cache(&seg, &journaled);
        // The log as read lays the journal's pieces over the segment: every entry, as shoald
        // will have it after its start.
        let out = tmp.path().join("backup.shoal");
        let export = ["export", s(&dir), "--out", s(&out), "--upto", "last"];
        let (code, v) = inspect_json(&export);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(
            v["header"]["index"], 30,
            "the entries only the journal holds too"
        );
        let (code, v) = inspect_json(&["log", s(&dir), "--from", "30"]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["groups"][0]["entries"][0]["index"], 30, "{}", v);
        // The segment itself still lacks them.
        let recs = scan_segment(&seg).unwrap().filter(Result::is_ok).count();
        assert_eq!(recs, 10, "the file is read, not changed");
        // Not while the data dir is locked (shoald running).
        let lock = shoal_std::storage::DirLock::acquire(&dir).unwrap();
        let (code, _, err) = run(&["replay-journal", s(&dir)]);
        assert_ne!(code, 0, "{err}");
        drop(lock);
        let (code, text, err) = run(&["replay-journal", s(&dir)]);
        assert_eq!(code, 0, "{err}");
        assert!(text.contains("written back into 1 segments"), "{text}");
        let recs = scan_segment(&seg).unwrap().filter(Result::is_ok).count();
        assert_eq!(recs, 30, "written back");
        let again = tmp.path().join("again.shoal");
        let (code, v) = inspect_json(&["export", s(&dir), "--out", s(&again), "--upto", "last"]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["header"]["index"], 30, "every entry is back");
    }

    #[test]
    fn live_pieces_are_shown_per_group_and_written_back_after_a_lost_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n1");
        let (seg, journaled) = journaled_dir(&dir);
        let bytes = journaled.end - journaled.start;

        let (code, v) = inspect_json(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", v);
        let j = &v["journal"];
        assert_eq!(j["file"], s(&dir.join(JOURNAL_FILE)));
        assert_eq!(
            (j["epoch"].as_u64(), j["barriers"].as_u64()),
            (Some(1), Some(0))
        );
        assert!(j["records"].as_u64().unwrap() >= 1, "{}", j);
        assert_eq!(j["records"], j["live_pieces"]);
        assert_eq!(j["live_bytes"], bytes, "the bytes of entries 11..=30");
        let g = &j["groups"][0];
        assert_eq!(
            (g["group"].as_u64(), g["live_bytes"].as_u64()),
            (Some(0), Some(bytes))
        );
        assert_eq!(
            (g["not_in_segments"].as_u64(), g["segment_gone"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(v["groups"][0]["last"][0], 30);

        let (code, out, _) = run(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", out);
        let pieces = j["live_pieces"].as_u64().unwrap();
        assert_holds(
            &out,
            &[
                &format!("journal    epoch 1, {pieces} records (0 barriers); {pieces} live pieces, {bytes} bytes"),
                &format!("group 0  {pieces} live pieces  {bytes} bytes\n"),
                "shoald writes the live pieces back into their segments at its next start",
                "health     OK",
            ],
        );
        let (code, out, _) = run(&["verify", s(&dir)]);
        assert_eq!(code, 0, "{}", out);
        assert_holds(&out, &["journal: epoch 1", "\nOK\n"]);

        lose_page_cache(&seg, &journaled);
        let (code, v) = inspect_json(&["verify", s(&dir)]);
        assert_eq!(code, 0, "recovery handles it: warnings only: {}", v);
        assert_eq!(v["journal"]["groups"][0]["not_in_segments"], pieces);
        let details: Vec<&str> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["detail"].as_str().unwrap())
            .collect();
        // One warning: the entries are read from the journal, so the commit index is not past
        // the log.
        assert_eq!(details.len(), 1, "{:?}", details);
        assert!(
            details[0].contains("sync journal holds log bytes of group 0")
                && details[0].contains("the log read here includes them"),
            "{:?}",
            details
        );
        let (_, v) = inspect_json(&["summary", s(&dir)]);
        assert_eq!(v["groups"][0]["last"][0], 30);
        let (_, out, _) = run(&["summary", s(&dir)]);
        assert_holds(&out, &[&format!("({pieces} not in its segments)")]);

        // What shoald does at its next start brings the entries back, and empties the epoch.
        journal::replay(&dir).unwrap();
        let (code, v) = inspect_json(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", v);
        assert_eq!(v["groups"][0]["last"][0], 30);
        assert_eq!(
            (
                v["journal"]["epoch"].as_u64(),
                v["journal"]["live_pieces"].as_u64()
            ),
            (Some(2), Some(0))
        );
        let out = summary_holds(
            &dir,
            &[
                "journal    epoch 2, 0 records (0 barriers); 0 live pieces, 0 bytes",
                "health     OK",
            ],
        );
        assert!(
            !out.contains("shoald writes the live pieces back"),
            "{}",
            out
        );
    }

    #[test]
    fn a_barrier_hides_earlier_pieces_and_pieces_of_gone_segments_are_counted() {
        let (_tmp, dir, _) = node_dir(60, None);
        let seg = segments(&dir)[0].clone();
        let first = segment_first_index(&seg);
        let there = &std::fs::read(&seg).unwrap()[30..90];
        let j = open_journal(&dir);
        assert!(j.add(0, first, 30, there));
        j.barrier(0).unwrap();
        assert!(j.add(0, first, 30, there));
        assert!(j.add(0, 99_999, 0, b"a segment compacted away"));
        assert!(j.add(7, 1, 0, b"a removed group"));
        j.sync().unwrap();
        let (code, v) = inspect_json(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", v);
        let j = &v["journal"];
        assert_eq!(
            (j["records"].as_u64(), j["barriers"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(
            j["live_pieces"], 3,
            "the piece before the barrier is not live"
        );
        let g0 = &j["groups"][0];
        assert_eq!(
            (g0["group"].as_u64(), g0["live_pieces"].as_u64()),
            (Some(0), Some(2))
        );
        assert_eq!(
            (g0["not_in_segments"].as_u64(), g0["segment_gone"].as_u64()),
            (Some(0), Some(1))
        );
        let g7 = &j["groups"][1];
        assert_eq!(
            (g7["group"].as_u64(), g7["segment_gone"].as_u64()),
            (Some(7), Some(1))
        );
        summary_holds(
            &dir,
            &[
                "group 0  2 live pieces  84 bytes  (1 of gone segments, skipped)",
                "group 7  1 live pieces",
            ],
        );
    }

    /// Rewrite the kind byte of the journal record at `at` and fix its CRC: a record that
    /// frames well but that no build of shoald wrote.
    fn set_kind(path: &Path, at: usize, kind: u8) {
        let mut bytes = std::fs::read(path).unwrap();
        let total = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize + 8;
        bytes[at + 5] = kind;
        let crc = CRC32C.checksum(&bytes[at..at + total - 4]);
        bytes[at + total - 4..at + total].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_journal_record_of_an_unknown_kind_is_damage_at_its_offset() {
        let (_tmp, dir, _) = node_dir(60, None);
        let j = open_journal(&dir);
        assert!(j.add(0, 1, 30, b"first"));
        assert!(j.add(0, 1, 35, b"second"));
        j.sync().unwrap();
        let path = dir.join(JOURNAL_FILE);
        let second = 4096 + 9 + 33 + b"first".len();
        set_kind(&path, second, 9);
        let p = &first_finding(&[s(&dir)], 1);
        assert_eq!(p["severity"], "error");
        assert_eq!(p["file"], s(&path));
        assert_eq!(p["offset"], second as u64, "{}", p);
        assert!(
            p["detail"].as_str().unwrap().contains("unknown kind 9"),
            "{}",
            p
        );
        let (code, out, _) = run(&["verify", s(&dir)]);
        assert_eq!(code, 1, "{}", out);
        assert_holds(&out, &[&format!("error: {} at offset {second}: sync journal: record at byte {second} has an unknown kind 9", s(&path)), "DAMAGED: 1 error(s)"]);
        let (code, out, _) = run(&["summary", s(&dir)]);
        assert_eq!(code, 1, "{}", out);
        assert_holds(&out, &["health     1 error(s)"]);
    }

    #[test]
    fn a_journal_whose_both_halves_are_live_shows_both_epochs_and_their_pieces() {
        let (_tmp, dir, _) = node_dir(60, None);
        let epoch = journal::replay(&dir).unwrap().epoch;
        let fs = Arc::new(FsSync::open(&dir).unwrap());
        // Halves of three pages: a few pieces fill one. (Pieces of groups the node does not
        // host: their segments are gone, which a replay skips.)
        let j = Journal::with_capacity(&dir, fs, epoch, 3 * 4096);
        assert!(j.add(9, 1, 30, b"first half"));
        let mut filler = 0;
        loop {
            assert!(j.add(7, 1, filler * 1000, &[7; 1000]));
            filler += 1;
            if j.sync().unwrap() == journal::JournalSync::Wrapped {
                break;
            }
            assert!(filler < 16, "a half never filled");
        }
        assert!(j.add(9, 1, 40, b"second half"));
        j.sync().unwrap();
        let (code, v) = inspect_json(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", v);
        let jv = &v["journal"];
        assert_eq!(jv["epoch"].as_u64(), Some(2), "{}", jv);
        assert_eq!(jv["epochs"], serde_json::json!([1, 2]), "{}", jv);
        assert_eq!(jv["records"].as_u64(), Some(filler + 2), "{}", jv);
        assert_eq!(
            jv["groups"][0]["live_pieces"].as_u64(),
            Some(filler),
            "group 7's pieces of both halves: {}",
            jv
        );
        assert_eq!(jv["groups"][1]["live_pieces"].as_u64(), Some(2), "{}", jv);
        let (code, out, _) = run(&["summary", s(&dir)]);
        assert_eq!(code, 0, "{}", out);
        assert_holds(
            &out,
            &[&format!(
                "journal    epochs 1 and 2, {} records (0 barriers)",
                filler + 2
            )],
        );
    }

    #[test]
    fn a_journal_header_torn_while_wrapping_is_a_warning() {
        let (_tmp, dir, _) = node_dir(60, None);
        let j = open_journal(&dir);
        assert!(j.add(0, 1, 30, b"x"));
        j.sync().unwrap();
        let path = dir.join(JOURNAL_FILE);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"torn", 8).unwrap();
        let p = &first_finding(&[s(&dir)], 0);
        assert_eq!(
            (p["severity"].as_str(), p["offset"].as_u64()),
            (Some("warning"), Some(0))
        );
        assert!(
            p["detail"].as_str().unwrap().contains("starts it afresh"),
            "{}",
            p
        );
    }
}
