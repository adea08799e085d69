//! `shoal-inspect`: look at a stopped Shoal node's data dir or flash image, offline.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use shoal_core::membership::Membership;
use shoal_core::types::{EntryKind, GroupId, LogIndex};
use shoal_kv::KvLimits;
use shoal_std::storage::scan::ScannedRecord;
use shoal_tools::backup::{self, BackupError, ImportPlan, Upto};
use shoal_tools::datadir::{quiet_scan, scan_dir, DirScan, GroupScan, ScanOptions};
use shoal_tools::flash::{parse_geometry, read_image, FlashError, FlashImage};
use shoal_tools::portable::read_snapshot_file;
use shoal_tools::problem::{any_error, Problem};
use shoal_tools::{state, text};

/// Exit code: success (warnings only, if any).
const EXIT_OK: u8 = 0;
/// Exit code: damage found (verify), or the input is too damaged to do what was asked.
const EXIT_DAMAGE: u8 = 1;
/// Exit code: usage error (bad flags, missing input, refusing to overwrite).
const EXIT_USAGE: u8 = 2;
/// Exit code: any other failure (IO error, unrestorable state).
const EXIT_FAILED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "shoal-inspect",
    version,
    about = "Inspect, verify, export and import a stopped Shoal node's data dir or flash image.",
    long_about = "Inspect, verify, export and import a stopped Shoal node's data dir or flash \
                  image. Never needs a running node and writes nothing, except `export` (its \
                  --out file) and `import` (a new data dir).",
    after_help = "Exit codes:\n  0  success (warnings such as a torn unsynced tail do not \
                  count)\n  1  damage found (verify, summary), or the input is too damaged \
                  for the command\n  2  usage error: bad flags, missing input, refusing to \
                  overwrite\n  3  other failure (IO error, state that does not restore)"
)]
struct Cli {
    /// Print JSON instead of tables (one document on stdout).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the data is: a data dir (positional) or a flash image.
#[derive(Args, Clone)]
struct Target {
    /// The data dir of a stopped node.
    #[arg(required_unless_present = "flash")]
    dir: Option<PathBuf>,
    /// A raw dump of an embedded node's flash partition instead of a data dir.
    #[arg(long, conflicts_with = "dir", requires = "geometry")]
    flash: Option<PathBuf>,
    /// Flash geometry: erase=BYTES[,write=BYTES][,sectors=N][,slot=N][,offset=BYTES]
    /// (write defaults to 4, slot to 4, offset to 0, sectors to the image size).
    #[arg(long)]
    geometry: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Identity, groups, hard state, log bounds, segments, snapshots, and whether all is well.
    Summary {
        #[command(flatten)]
        target: Target,
    },
    /// One line per log entry: index, term, kind, size, and the command in words.
    Log {
        #[command(flatten)]
        target: Target,
        /// Group id (default: every group).
        #[arg(long)]
        group: Option<GroupId>,
        /// First index to show.
        #[arg(long)]
        from: Option<LogIndex>,
        /// Last index to show.
        #[arg(long)]
        to: Option<LogIndex>,
        /// Show at most this many entries.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One entry in full, with a hex dump of its payload.
    Entry {
        /// DIR INDEX, or INDEX with --flash.
        #[arg(required = true, num_args = 1..=2, value_name = "DIR INDEX")]
        args: Vec<String>,
        /// A raw dump of an embedded node's flash partition instead of a data dir.
        #[arg(long, requires = "geometry")]
        flash: Option<PathBuf>,
        /// Flash geometry (see `summary --help`).
        #[arg(long)]
        geometry: Option<String>,
        /// Group id.
        #[arg(long, default_value_t = 0)]
        group: GroupId,
    },
    /// Check every record's CRC, index continuity, hard state vs log, snapshot checksums.
    /// Exit 0 when clean (warnings allowed), 1 when damage was found.
    Verify {
        #[command(flatten)]
        target: Target,
    },
    /// Show a snapshot file (a data dir `.snap` or an `export` file).
    Snapshot {
        /// The file.
        file: PathBuf,
        /// List the key tree.
        #[arg(long)]
        keys: bool,
        /// List the key tree with values.
        #[arg(long)]
        dump: bool,
    },
    /// Write a portable snapshot of a node's latest state (for backups).
    Export {
        /// The data dir of a stopped node.
        dir: PathBuf,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Group id.
        #[arg(long, default_value_t = 0)]
        group: GroupId,
        /// Apply the log up to the commit index hint (every entry known committed) or up to
        /// the last entry (for rebuilding from the most up-to-date survivor).
        #[arg(long, value_enum, default_value_t = Upto::Commit)]
        upto: Upto,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        /// The DtKV node limit shoald ran with (its --kv-max-nodes); the replay must refuse
        /// exactly the writes the node refused.
        #[arg(long, default_value_t = 262_144)]
        kv_max_nodes: usize,
        /// The DtKV arena shoald ran with, in MiB (its --kv-arena-mb).
        #[arg(long, default_value_t = 64)]
        kv_arena_mb: usize,
    },
    /// Build a fresh data dir from a snapshot file with a NEW member list (to rebuild a
    /// cluster that lost quorum). Refuses a non-empty dir.
    Import {
        /// An `export` file (or a data dir `.snap` with --cluster-id).
        file: PathBuf,
        /// The new data dir (must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// This node's id in the new cluster.
        #[arg(long)]
        node_id: u64,
        /// The new members, all voters: ID=RAFT_ADDR[/CLIENT_ADDR],... (as shoald
        /// --initial-members; the client address defaults to the raft port + 1).
        #[arg(long)]
        members: String,
        /// Cluster id (default: the export's).
        #[arg(long)]
        cluster_id: Option<u64>,
        /// This node's raft address (default: its address in --members).
        #[arg(long)]
        raft_addr: Option<String>,
    },
}

/// How a command ended.
enum Outcome {
    Ok,
    Damage,
    Usage(String),
    Failed(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = run(&cli);
    let code = match outcome {
        Outcome::Ok => EXIT_OK,
        Outcome::Damage => EXIT_DAMAGE,
        Outcome::Usage(msg) => {
            eprintln!("shoal-inspect: {}", msg);
            EXIT_USAGE
        }
        Outcome::Failed(msg) => {
            eprintln!("shoal-inspect: {}", msg);
            EXIT_FAILED
        }
    };
    ExitCode::from(code)
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values always print")
    );
}

/// A progress bar over segment bytes, only when stderr is a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        let bar = (std::io::stderr().is_terminal() && total_bytes > 8 << 20).then(|| {
            let b = indicatif::ProgressBar::new(total_bytes);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            b.set_message("scanning segments");
            b
        });
        Progress { bar }
    }
    fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn total_segment_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(groups) = shoal_std::storage::scan::list_groups(dir) {
        for g in groups {
            let log = shoal_std::storage::scan::log_dir(&shoal_tools::datadir::group_path(dir, g));
            if let Ok(segs) = shoal_std::storage::scan::list_segments(&log) {
                total += segs
                    .iter()
                    .filter_map(|s| std::fs::metadata(&s.path).ok())
                    .map(|m| m.len())
                    .sum::<u64>();
            }
        }
    }
    total
}

fn run(cli: &Cli) -> Outcome {
    match &cli.cmd {
        Cmd::Summary { target } => match flash_of(target) {
            Some(f) => f.map_or_else(|o| o, |(img, path)| flash_summary(cli.json, &img, &path)),
            None => with_scan(target, None, true, |scan| summary(cli.json, scan)),
        },
        Cmd::Verify { target } => match flash_of(target) {
            Some(f) => f.map_or_else(|o| o, |(img, path)| flash_verify(cli.json, &img, &path)),
            None => with_scan(target, None, true, |scan| verify(cli.json, scan)),
        },
        Cmd::Log {
            target,
            group,
            from,
            to,
            limit,
        } => {
            let filter = Filter {
                from: from.unwrap_or(0),
                to: to.unwrap_or(u64::MAX),
                limit: limit.unwrap_or(usize::MAX),
            };
            match flash_of(target) {
                Some(f) => f.map_or_else(|o| o, |(img, _)| flash_log(cli.json, &img, &filter)),
                None => log_cmd(cli.json, target, *group, &filter),
            }
        }
        Cmd::Entry {
            args,
            flash,
            geometry,
            group,
        } => {
            let (dir, index) = match (args.as_slice(), flash.is_some()) {
                ([i], true) => (None, i),
                ([d, i], false) => (Some(PathBuf::from(d)), i),
                _ => {
                    return Outcome::Usage(
                        "entry takes DIR INDEX, or INDEX with --flash FILE --geometry ...".into(),
                    )
                }
            };
            let Ok(index) = index.parse::<LogIndex>() else {
                return Outcome::Usage(format!("`{}` is not a log index", index));
            };
            let target = Target {
                dir,
                flash: flash.clone(),
                geometry: geometry.clone(),
            };
            let target = &target;
            match flash_of(target) {
                Some(f) => f.map_or_else(
                    |o| o,
                    |(img, _)| {
                        let before = config_before_flash(&img, index);
                        match img.entries.iter().find(|e| e.index == index) {
                            Some(e) => {
                                show_entry(
                                    cli.json,
                                    index,
                                    e.term,
                                    e.kind,
                                    &e.data,
                                    None,
                                    before.as_ref(),
                                );
                                Outcome::Ok
                            }
                            None => Outcome::Usage(format!("entry {} is not in the image", index)),
                        }
                    },
                ),
                None => entry_cmd(cli.json, target, *group, index),
            }
        }
        Cmd::Snapshot { file, keys, dump } => snapshot_cmd(cli.json, file, *keys || *dump, *dump),
        Cmd::Export {
            dir,
            out,
            group,
            upto,
            force,
            kv_max_nodes,
            kv_arena_mb,
        } => {
            // The limits shoald builds each group's store with (see its raft loop).
            let mut base = KvLimits::server();
            base.max_nodes = *kv_max_nodes;
            base.arena_bytes = kv_arena_mb.saturating_mul(1 << 20);
            match backup::export(dir, *group, *upto, out, *force, base) {
                Ok(r) => {
                    if cli.json {
                        print_json(&serde_json::to_value(&r).expect("the report serializes"));
                    } else {
                        for w in &r.warnings {
                            eprintln!("{}", w);
                        }
                        println!(
                            "exported group {} of node {} (cluster {}) at index {} term {} to {}",
                            r.header.group,
                            r.header.source_node,
                            r.header.cluster_id,
                            r.header.index,
                            r.header.term,
                            r.out
                        );
                        println!(
                            "  snapshot {} + {} entries applied; {} members; digest {:#018x}; {} bytes",
                            r.from_snapshot,
                            r.entries_applied,
                            text::members(&r.header.membership),
                            r.header.digest,
                            r.header.data_bytes
                        );
                        if r.entries_not_exported > 0 {
                            println!(
                                "  {} entries after index {} are not exported (not known committed; \
                                 --upto last includes them)",
                                r.entries_not_exported, r.header.index
                            );
                        }
                    }
                    Outcome::Ok
                }
                Err(e) => backup_error(e),
            }
        }
        Cmd::Import {
            file,
            data_dir,
            node_id,
            members,
            cluster_id,
            raft_addr,
        } => {
            let members = match backup::parse_members(members) {
                Ok(m) => m,
                Err(e) => return Outcome::Usage(format!("--members: {}", e)),
            };
            let plan = ImportPlan {
                file: file.clone(),
                data_dir: data_dir.clone(),
                node_id: *node_id,
                members,
                cluster_id: *cluster_id,
                raft_addr: raft_addr.clone(),
            };
            match backup::import(&plan) {
                Ok(r) => {
                    if cli.json {
                        print_json(&serde_json::to_value(&r).expect("the report serializes"));
                    } else {
                        let ids: Vec<String> = r.members.iter().map(|m| m.id.to_string()).collect();
                        println!(
                            "built {} for node {} (cluster {}, raft {}): group {} snapshot at index {} \
                             term {}, voters [{}]",
                            r.data_dir,
                            r.node_id,
                            r.cluster_id,
                            r.raft_addr,
                            r.group,
                            r.index,
                            r.term,
                            ids.join(",")
                        );
                        println!(
                            "start shoald on it with the same --node-id, --cluster-id and \
                             addresses; do the same on every member with the same export"
                        );
                    }
                    Outcome::Ok
                }
                Err(e) => backup_error(e),
            }
        }
    }
}

fn backup_error(e: BackupError) -> Outcome {
    match e {
        BackupError::Usage(s) => Outcome::Usage(s),
        BackupError::Failed(s) => Outcome::Failed(s),
        BackupError::Damaged(ps) => {
            eprintln!("shoal-inspect: the source is damaged; nothing was written:");
            for p in ps {
                eprintln!("  {}", p);
            }
            Outcome::Damage
        }
    }
}

// ----- data dirs -----------------------------------------------------------------------------

fn with_scan(
    target: &Target,
    group: Option<GroupId>,
    verify_snapshots: bool,
    f: impl FnOnce(&DirScan) -> Outcome,
) -> Outcome {
    let dir = target
        .dir
        .as_ref()
        .expect("clap requires a dir without --flash");
    let progress = Progress::new(if std::io::stderr().is_terminal() {
        total_segment_bytes(dir)
    } else {
        0
    });
    let mut on_seg = |n: u64| progress.add(n);
    let mut on_rec = |_: &Path, _: &ScannedRecord| {};
    let scan = scan_dir(
        dir,
        group,
        &mut ScanOptions {
            verify_snapshots,
            on_segment: &mut on_seg,
            on_record: &mut on_rec,
        },
    );
    progress.done();
    match scan {
        Ok(s) => f(&s),
        Err(e) => Outcome::Usage(e.0),
    }
}

fn problems_outcome(problems: &[&Problem]) -> Outcome {
    if problems.iter().any(|p| p.is_error()) {
        Outcome::Damage
    } else {
        Outcome::Ok
    }
}

fn summary(json: bool, scan: &DirScan) -> Outcome {
    let problems: Vec<&Problem> = scan.all_problems().collect();
    if json {
        let mut v = serde_json::to_value(scan).expect("the scan serializes");
        v["ok"] = json!(!scan.has_errors());
        print_json(&v);
        return problems_outcome(&problems);
    }
    println!("data dir   {}", scan.data_dir);
    match &scan.identity {
        Some(id) => println!(
            "identity   cluster {}  node {}  raft address {}",
            id.cluster_id, id.node_id, id.raft_addr
        ),
        None => println!("identity   (unreadable)"),
    }
    let ids: Vec<String> = scan.groups.iter().map(|g| g.group.to_string()).collect();
    println!(
        "groups     {}",
        if ids.is_empty() {
            "(none)".into()
        } else {
            ids.join(", ")
        }
    );
    for g in &scan.groups {
        group_summary(g);
    }
    println!();
    if problems.is_empty() {
        println!("health     OK");
    } else {
        let errors = problems.iter().filter(|p| p.is_error()).count();
        println!(
            "health     {} error(s), {} warning(s)",
            errors,
            problems.len() - errors
        );
        for p in &problems {
            println!("  {}", p);
        }
    }
    problems_outcome(&problems)
}

fn group_summary(g: &GroupScan) {
    println!();
    println!("group {}  ({})", g.group, g.dir);
    match &g.hard_state {
        Some(h) => println!(
            "  hard state   term {}  vote {}  commit {}",
            h.term,
            if h.vote == 0 {
                "none".into()
            } else {
                h.vote.to_string()
            },
            h.commit
        ),
        None => println!("  hard state   (unreadable)"),
    }
    match (g.first, g.last) {
        (Some(f), Some(l)) => println!(
            "  log          {} entries: first {} (term {})  last {} (term {})",
            g.entries, f.0, f.1, l.0, l.1
        ),
        _ => println!("  log          empty"),
    }
    println!(
        "  segments     {} files, {} bytes",
        g.segments.len(),
        g.segment_bytes
    );
    if g.snapshots.is_empty() {
        println!("  snapshots    none");
    } else {
        println!(
            "  snapshots    {:>10} {:>6} {:>12}  members",
            "index", "term", "bytes"
        );
        for s in &g.snapshots {
            println!(
                "             {} {:>10} {:>6} {:>12}  {}",
                if s.current { "*" } else { " " },
                s.index,
                s.term,
                s.size_bytes,
                s.members
            );
        }
    }
}

fn verify(json: bool, scan: &DirScan) -> Outcome {
    let problems: Vec<&Problem> = scan.all_problems().collect();
    if json {
        print_json(&json!({
            "data_dir": scan.data_dir,
            "ok": !scan.has_errors(),
            "groups": scan.groups.iter().map(|g| json!({
                "group": g.group, "entries": g.entries, "segments": g.segments.len(),
                "snapshots": g.snapshots.len(),
            })).collect::<Vec<_>>(),
            "problems": problems,
        }));
        return problems_outcome(&problems);
    }
    for g in &scan.groups {
        println!(
            "group {}: {} segments, {} entries, {} snapshots checked",
            g.group,
            g.segments.len(),
            g.entries,
            g.snapshots.len()
        );
    }
    for p in &problems {
        println!("{}", p);
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    if errors == 0 {
        println!(
            "OK{}",
            if problems.is_empty() {
                String::new()
            } else {
                format!(" ({} warning(s))", problems.len())
            }
        );
    } else {
        println!("DAMAGED: {} error(s)", errors);
    }
    problems_outcome(&problems)
}

struct Filter {
    from: LogIndex,
    to: LogIndex,
    limit: usize,
}

impl Filter {
    fn wants(&self, index: LogIndex) -> bool {
        index >= self.from && index <= self.to
    }
}

fn log_line(
    index: LogIndex,
    term: u64,
    kind: EntryKind,
    data: &[u8],
    before: Option<&Membership>,
) -> String {
    format!(
        "{:>10} {:>6} {:<7} {:>7}  {}",
        index,
        term,
        text::kind(kind),
        data.len(),
        text::entry(kind, data, before)
    )
}

fn log_json(
    index: LogIndex,
    term: u64,
    kind: EntryKind,
    data: &[u8],
    before: Option<&Membership>,
) -> Value {
    json!({
        "index": index, "term": term, "kind": text::kind(kind), "bytes": data.len(),
        "text": text::entry(kind, data, before),
        "command": text::entry_json(kind, data, before),
    })
}

fn log_cmd(json: bool, target: &Target, group: Option<GroupId>, filter: &Filter) -> Outcome {
    let dir = target
        .dir
        .as_ref()
        .expect("clap requires a dir without --flash");
    let groups = match quiet_scan(dir, group, false) {
        Ok(s) => s.groups,
        Err(e) => return Outcome::Usage(e.0),
    };
    let mut out_json = Vec::new();
    let mut all_problems = Vec::new();
    for g in groups {
        if !json {
            println!("group {}", g.group);
        }
        let mut printer =
            LogPrinter::new(json, g.snapshot_index(), g.snapshot_membership().cloned());
        let mut on_seg = |_: u64| {};
        let mut on_rec = |_: &Path, r: &ScannedRecord| {
            let e = &r.entry;
            printer.entry(filter, e.index, e.term, e.kind, &e.data);
        };
        let rescan = scan_dir(
            dir,
            Some(g.group),
            &mut ScanOptions {
                verify_snapshots: false,
                on_segment: &mut on_seg,
                on_record: &mut on_rec,
            },
        );
        if let Ok(s) = rescan {
            for p in s.all_problems() {
                if !json {
                    eprintln!("{}", p);
                }
                all_problems.push(p.clone());
            }
        }
        out_json.push(json!({"group": g.group, "entries": printer.lines}));
    }
    if json {
        print_json(&json!({"groups": out_json, "problems": all_problems}));
    }
    if any_error(&all_problems) {
        Outcome::Damage
    } else {
        Outcome::Ok
    }
}

fn show_entry(
    json: bool,
    index: LogIndex,
    term: u64,
    kind: EntryKind,
    data: &[u8],
    place: Option<(&Path, u64, u64)>,
    before: Option<&Membership>,
) {
    if json {
        let mut v = log_json(index, term, kind, data, before);
        v["payload_hex"] = json!(text::hex(data));
        if let Some((f, off, len)) = place {
            v["file"] = json!(f.display().to_string());
            v["offset"] = json!(off);
            v["record_bytes"] = json!(len);
        }
        print_json(&v);
        return;
    }
    println!("index    {}", index);
    println!("term     {}", term);
    println!("kind     {}", text::kind(kind));
    if let Some((f, off, len)) = place {
        println!("record   {} at offset {} ({} bytes)", f.display(), off, len);
    }
    println!("payload  {} bytes", data.len());
    let full = match kind {
        EntryKind::Normal if shoal_tools::addrbook::decode_addr_entry(data).is_none() => {
            text::command(data, usize::MAX)
        }
        _ => text::entry(kind, data, before),
    };
    println!("command  {}", full);
    println!();
    print!("{}", text::hex_dump(data));
}

fn entry_cmd(json: bool, target: &Target, group: GroupId, index: LogIndex) -> Outcome {
    let dir = target
        .dir
        .as_ref()
        .expect("clap requires a dir without --flash");
    let mut found: Option<(PathBuf, ScannedRecord, Option<Membership>)> = None;
    let mut config: Option<Membership> = None;
    let mut snap_member: Option<Membership> = None;
    if let Ok(s) = quiet_scan(dir, Some(group), false) {
        snap_member = s
            .groups
            .first()
            .and_then(|g| g.snapshot_membership().cloned());
    }
    config = config.or(snap_member);
    let mut on_seg = |_: u64| {};
    let mut on_rec = |p: &Path, r: &ScannedRecord| {
        if r.entry.index == index {
            found = Some((p.to_path_buf(), r.clone(), config.clone()));
        }
        if r.entry.kind == EntryKind::Config {
            if let Ok(m) = text::decode_config(&r.entry.data) {
                config = Some(m);
            }
        }
    };
    let scan = scan_dir(
        dir,
        Some(group),
        &mut ScanOptions {
            verify_snapshots: false,
            on_segment: &mut on_seg,
            on_record: &mut on_rec,
        },
    );
    if let Err(e) = scan {
        return Outcome::Usage(e.0);
    }
    match found {
        Some((path, r, before)) => {
            show_entry(
                json,
                index,
                r.entry.term,
                r.entry.kind,
                &r.entry.data,
                Some((&path, r.offset, r.len)),
                before.as_ref(),
            );
            Outcome::Ok
        }
        None => Outcome::Usage(format!(
            "entry {} is not in the log of group {} of {} (see `shoal-inspect summary`)",
            index,
            group,
            dir.display()
        )),
    }
}

fn snapshot_cmd(json: bool, file: &Path, keys: bool, values: bool) -> Outcome {
    let snap = match read_snapshot_file(file) {
        Ok(s) => s,
        Err(p) => {
            eprintln!("shoal-inspect: {}", p);
            return Outcome::Damage;
        }
    };
    let h = &snap.header;
    let tree = if keys {
        match state::rebuild(KvLimits::server(), Some((&snap.data, h.index)), &[], |kv| {
            state::key_tree(kv, values)
        }) {
            Ok(t) => Some(t),
            Err(e) => return Outcome::Failed(format!("{}: {}", file.display(), e)),
        }
    } else {
        None
    };
    let kvh = state::kv_header(&snap.data).ok();
    if json {
        let mut v = json!({
            "file": file.display().to_string(),
            "source": snap.source,
            "cluster_id": h.cluster_id,
            "source_node": h.source_node,
            "group": h.group,
            "index": h.index,
            "term": h.term,
            "membership": text::members_json(&h.membership),
            "digest": format!("{:#018x}", h.digest),
            "data_bytes": h.data_bytes,
            "data_crc": format!("{:#010x}", h.data_crc),
            "nodes": kvh.map(|k| k.nodes),
            "sessions": kvh.map(|k| k.sessions),
        });
        if let Some(t) = &tree {
            v["keys"] = serde_json::to_value(t).expect("keys serialize");
        }
        print_json(&v);
        return Outcome::Ok;
    }
    println!("file       {}", file.display());
    println!(
        "kind       {}",
        match snap.source {
            shoal_tools::portable::SnapshotSource::Export => "portable export",
            shoal_tools::portable::SnapshotSource::DataDir => "data dir snapshot",
        }
    );
    if h.cluster_id != 0 {
        println!(
            "cluster    {}  (exported from node {})",
            h.cluster_id, h.source_node
        );
    }
    println!("group      {}", h.group);
    println!("index      {}  term {}", h.index, h.term);
    println!("members    {}", text::members(&h.membership));
    println!("digest     {:#018x}", h.digest);
    println!(
        "data       {} bytes, crc {:#010x} (verified)",
        h.data_bytes, h.data_crc
    );
    if let Some(k) = kvh {
        println!(
            "dtkv       {} nodes, {} sessions, clock {}ms",
            k.nodes, k.sessions, k.now_ms
        );
    }
    if let Some(t) = tree {
        println!();
        for n in t {
            let indent = "  ".repeat(n.depth.saturating_sub(1));
            let mut line = format!("{}{} [{}]", indent, n.key, n.kind);
            if let Some(v) = &n.value {
                line.push_str(&format!(" = {}", text::value(v.as_bytes(), 256)));
            } else if n.value_bytes > 0 {
                line.push_str(&format!(" ({} bytes)", n.value_bytes));
            }
            if n.owner != 0 {
                line.push_str(&format!(" owner {}", n.owner));
            }
            if n.deadline_ms != 0 {
                line.push_str(&format!(" until {}ms", n.deadline_ms));
            }
            println!("{}", line);
        }
    }
    Outcome::Ok
}

// ----- flash images --------------------------------------------------------------------------

type FlashLoad = Result<(FlashImage, PathBuf), Outcome>;

fn flash_of(target: &Target) -> Option<FlashLoad> {
    let path = target.flash.as_ref()?;
    Some(load_flash(path, target.geometry.as_deref().unwrap_or("")))
}

fn load_flash(path: &Path, geometry: &str) -> FlashLoad {
    let bytes = std::fs::read(path)
        .map_err(|e| Outcome::Usage(format!("cannot read {}: {}", path.display(), e)))?;
    let geo = parse_geometry(geometry, bytes.len())
        .map_err(|e| Outcome::Usage(format!("--geometry: {}", e)))?;
    match read_image(bytes, geo) {
        Ok(img) => Ok((img, path.to_path_buf())),
        Err(FlashError::Geometry(e)) => Err(Outcome::Usage(format!("--geometry: {}", e))),
        Err(FlashError::Corrupt { address, detail }) => {
            let p = Problem::error(path, Some(address), detail);
            Err(report_flash_damage(&p))
        }
        Err(FlashError::Failed(e)) => Err(Outcome::Failed(format!("{}: {}", path.display(), e))),
    }
}

fn report_flash_damage(p: &Problem) -> Outcome {
    // Both human and JSON callers get the finding on stdout, so `verify` reads the same.
    println!("{}", p);
    println!("DAMAGED: 1 error(s)");
    Outcome::Damage
}

fn flash_summary(json: bool, img: &FlashImage, path: &Path) -> Outcome {
    let problems = img.problems(path);
    if json {
        print_json(&json!({
            "image": path.display().to_string(),
            "geometry": img.geometry,
            "hard_state": {"term": img.hard_state.term, "vote": img.hard_state.vote, "commit": img.hard_state.commit},
            "first": img.bounds().map(|b| b.0),
            "last": img.bounds().map(|b| b.1),
            "entries": img.entries.len(),
            "ring_sectors": img.ring_sectors,
            "ring_live_sectors": img.ring_live_sectors,
            "snapshot": img.snapshot.as_ref().map(|s| json!({"index": s.index, "term": s.term,
                "size_bytes": s.size_bytes, "members": text::members(&s.membership),
                "crc_ok": img.snapshot_crc_ok})),
            "problems": problems,
            "ok": !any_error(&problems),
        }));
        return if any_error(&problems) {
            Outcome::Damage
        } else {
            Outcome::Ok
        };
    }
    let g = img.geometry;
    println!("flash image {}", path.display());
    println!(
        "geometry   erase {} B, write {} B, {} sectors ({} per snapshot slot) at offset {}",
        g.erase, g.write, g.sectors, g.slot, g.offset
    );
    let h = img.hard_state;
    println!(
        "hard state term {}  vote {}  commit {}",
        h.term,
        if h.vote == 0 {
            "none".into()
        } else {
            h.vote.to_string()
        },
        h.commit
    );
    match img.bounds() {
        Some((f, l)) => println!(
            "log        {} entries: first {} (term {})  last {} (term {})",
            img.entries.len(),
            f.0,
            f.1,
            l.0,
            l.1
        ),
        None => println!("log        empty"),
    }
    println!(
        "ring       {} of {} sectors live",
        img.ring_live_sectors, img.ring_sectors
    );
    match &img.snapshot {
        Some(s) => println!(
            "snapshot   index {} term {} {} bytes  {}",
            s.index,
            s.term,
            s.size_bytes,
            text::members(&s.membership)
        ),
        None => println!("snapshot   none"),
    }
    if problems.is_empty() {
        println!("health     OK");
    } else {
        for p in &problems {
            println!("  {}", p);
        }
    }
    if any_error(&problems) {
        Outcome::Damage
    } else {
        Outcome::Ok
    }
}

fn flash_verify(json: bool, img: &FlashImage, path: &Path) -> Outcome {
    let problems = img.problems(path);
    if json {
        print_json(
            &json!({"image": path.display().to_string(), "ok": !any_error(&problems),
            "entries": img.entries.len(), "problems": problems}),
        );
    } else {
        println!(
            "{}: {} entries recovered",
            path.display(),
            img.entries.len()
        );
        for p in &problems {
            println!("{}", p);
        }
        if any_error(&problems) {
            println!(
                "DAMAGED: {} error(s)",
                problems.iter().filter(|p| p.is_error()).count()
            );
        } else {
            println!("OK");
        }
    }
    if any_error(&problems) {
        Outcome::Damage
    } else {
        Outcome::Ok
    }
}

fn config_before_flash(img: &FlashImage, index: LogIndex) -> Option<Membership> {
    let snap_index = img.snapshot.as_ref().map_or(0, |s| s.index);
    let mut config = img.snapshot.as_ref().map(|s| s.membership.clone());
    for e in img
        .entries
        .iter()
        .filter(|e| e.index < index && e.index > snap_index)
    {
        if e.kind == EntryKind::Config {
            if let Ok(m) = text::decode_config(&e.data) {
                config = Some(m);
            }
        }
    }
    config
}

fn flash_log(json: bool, img: &FlashImage, filter: &Filter) -> Outcome {
    let snap_index = img.snapshot.as_ref().map_or(0, |s| s.index);
    let mut printer = LogPrinter::new(
        json,
        snap_index,
        img.snapshot.as_ref().map(|s| s.membership.clone()),
    );
    for e in &img.entries {
        printer.entry(filter, e.index, e.term, e.kind, &e.data);
    }
    if json {
        print_json(&json!({"entries": printer.lines}));
    }
    Outcome::Ok
}

/// Prints log entries one line each (or collects them as JSON), tracking the membership in
/// force so configuration changes show as before → after.
struct LogPrinter {
    json: bool,
    snap_index: LogIndex,
    config: Option<Membership>,
    shown: usize,
    lines: Vec<Value>,
}

impl LogPrinter {
    fn new(json: bool, snap_index: LogIndex, config: Option<Membership>) -> LogPrinter {
        if !json {
            println!(
                "{:>10} {:>6} {:<7} {:>7}  command",
                "index", "term", "kind", "bytes"
            );
        }
        LogPrinter {
            json,
            snap_index,
            config,
            shown: 0,
            lines: Vec::new(),
        }
    }

    fn entry(
        &mut self,
        filter: &Filter,
        index: LogIndex,
        term: shoal_core::types::Term,
        kind: EntryKind,
        data: &[u8],
    ) {
        // Entries at or below the snapshot were superseded by it: they do not change the
        // membership shown for later configs.
        let before = self.config.clone();
        if kind == EntryKind::Config && index > self.snap_index {
            if let Ok(m) = text::decode_config(data) {
                self.config = Some(m);
            }
        }
        if !filter.wants(index) || self.shown >= filter.limit {
            return;
        }
        self.shown += 1;
        if self.json {
            self.lines
                .push(log_json(index, term, kind, data, before.as_ref()));
        } else {
            println!("{}", log_line(index, term, kind, data, before.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
