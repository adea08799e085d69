//! `shoal-inspect`: look at a stopped Shoal node's data dir or flash image, offline. This file
//! is only the command line; the commands live in `shoal_tools::commands`.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use shoal_core::types::{GroupId, LogIndex};
use shoal_kv::KvLimits;
use shoal_tools::backup::{self, ExportPlan, ImportPlan, Upto};
use shoal_tools::commands::{self, Console, Filter, Outcome, EXIT_READER_GONE};
use shoal_tools::portable::read_snapshot_file;
use shoal_tools::source::{self, ReadRequest, Source, SourceError, Visitor};

#[derive(Parser)]
#[command(
    name = "shoal-inspect",
    version,
    about = "Inspect, verify, export and import a stopped Shoal node's data dir or flash image.",
    long_about = "Inspect, verify, export and import a stopped Shoal node's data dir or flash \
                  image. Never needs a running node and writes nothing, except `export` (its \
                  --out file) and `import` (a new data dir). A flash image holds one group and \
                  does not record its id: --group names it (default 0).",
    after_help = "Exit codes:\n  0  success (warnings such as a torn unsynced tail do not \
                  count)\n  1  damage found (verify, summary), or the input is too damaged \
                  for the command\n  2  usage error: bad flags, missing input, refusing to \
                  overwrite\n  3  other failure (IO error, state that does not restore)\n  \
                  141  the reader of the output went away (`| head`), as for a writer \
                  ended by SIGPIPE"
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
    #[command(flatten)]
    image: Image,
}

/// A flash image instead of a data dir.
#[derive(Args, Clone)]
struct Image {
    /// A raw dump of an embedded node's flash partition instead of a data dir.
    #[arg(long, requires = "geometry")]
    flash: Option<PathBuf>,
    /// Flash geometry: erase=BYTES[,write=BYTES][,sectors=N][,slot=N][,offset=BYTES]
    /// (write defaults to 4, slot to 4, offset to 0, sectors to the image size).
    #[arg(long)]
    geometry: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Identity, the sync journal's live pieces, groups, hard state, log bounds, segments,
    /// snapshots, and whether all is well.
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
        #[command(flatten)]
        image: Image,
        /// Group id.
        #[arg(long, default_value_t = 0)]
        group: GroupId,
    },
    /// Check every record's CRC, index continuity, hard state vs log, snapshot checksums, and
    /// that the sync journal parses.
    /// Exit 0 when clean (warnings allowed), 1 when damage was found.
    Verify {
        #[command(flatten)]
        target: Target,
    },
    /// Show a snapshot: a file (a data dir `.snap` or an `export` file), a data dir's current
    /// snapshot, or a flash image's.
    Snapshot {
        /// The file, or a data dir (its group's current snapshot).
        #[arg(required_unless_present = "flash")]
        file: Option<PathBuf>,
        #[command(flatten)]
        image: Image,
        /// Group id, for a data dir or a flash image.
        #[arg(long, default_value_t = 0)]
        group: GroupId,
        /// List the key tree.
        #[arg(long)]
        keys: bool,
        /// List the key tree with values.
        #[arg(long)]
        dump: bool,
    },
    /// Write a portable snapshot of a node's latest state (for backups).
    Export {
        #[command(flatten)]
        target: Target,
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
    /// Write the sync journal's live pieces back into their segments, as shoald does when it
    /// starts (after a power cut, the only copy of the newest acknowledged entries of groups
    /// that were busy together). Takes the data dir's lock: refused while shoald runs.
    ReplayJournal {
        /// The data dir.
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    shoal_cli_docs::answer_and_exit::<Cli>();
    let cli = Cli::parse();
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let mut console = Console {
        json: cli.json,
        out: &mut out,
        err: &mut err,
    };
    let outcome = match run(&cli, &mut console).and_then(|o| console.out.flush().map(|()| o)) {
        Ok(o) => o,
        // The reader went away (`| head`): nothing left to say to anyone.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::from(EXIT_READER_GONE),
        Err(e) => Outcome::Failed(format!("cannot write the output: {}", e)),
    };
    if let Outcome::Usage(msg) | Outcome::Failed(msg) = &outcome {
        eprintln!("shoal-inspect: {}", msg);
    }
    ExitCode::from(outcome.exit_code())
}

/// Open the data dir or flash image a command names.
fn open(dir: Option<&Path>, image: &Image, group: GroupId) -> Result<Box<dyn Source>, SourceError> {
    let flash = image
        .flash
        .as_deref()
        .map(|f| (f, image.geometry.as_deref().unwrap_or("")));
    source::open(dir, flash, group)
}

/// Run `f` on the source a command names, or end with why it cannot be read.
/// `replay-journal`: the data dir locked as shoald locks it, the journal written back.
fn replay_journal(c: &mut Console<'_>, dir: &Path) -> io::Result<Outcome> {
    if !dir.join(shoal_std::storage::journal::JOURNAL_FILE).exists() {
        writeln!(
            c.out,
            "{}: no sync journal; nothing to write back",
            dir.display()
        )?;
        return Ok(Outcome::Ok);
    }
    let _lock = match shoal_std::storage::DirLock::acquire(dir) {
        Ok(l) => l,
        Err(e) => return Ok(Outcome::Failed(format!("{}: {e}", dir.display()))),
    };
    match shoal_std::storage::journal::replay(dir) {
        Ok(r) => {
            writeln!(
                c.out,
                "{}: {} pieces written back into {} segments ({} skipped: segment gone); the \
                 journal is at epoch {} now",
                dir.display(),
                r.pieces,
                r.segments,
                r.skipped,
                r.epoch
            )?;
            Ok(Outcome::Ok)
        }
        Err(e) => Ok(Outcome::Failed(e)),
    }
}

fn with_source(
    c: &mut Console<'_>,
    dir: Option<&Path>,
    image: &Image,
    group: GroupId,
    f: impl FnOnce(&mut Console<'_>, &dyn Source) -> io::Result<Outcome>,
) -> io::Result<Outcome> {
    match open(dir, image, group) {
        Ok(s) => f(c, s.as_ref()),
        Err(e) => c.source_error(e),
    }
}

fn run(cli: &Cli, c: &mut Console<'_>) -> io::Result<Outcome> {
    match &cli.cmd {
        Cmd::Summary { target } => overview(c, target, commands::summary),
        Cmd::Verify { target } => overview(c, target, commands::verify),
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
            let image_group = group.unwrap_or(0);
            with_source(
                c,
                target.dir.as_deref(),
                &target.image,
                image_group,
                |c, s| commands::log(c, s, *group, filter),
            )
        }
        Cmd::Entry { args, image, group } => entry(c, args, image, *group),
        Cmd::Snapshot {
            file,
            image,
            group,
            keys,
            dump,
        } => snapshot(c, file.as_deref(), image, *group, *keys || *dump, *dump),
        Cmd::Export {
            target,
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
            let plan = ExportPlan {
                group: *group,
                upto: *upto,
                out: out.clone(),
                force: *force,
                base,
            };
            with_source(c, target.dir.as_deref(), &target.image, *group, |c, s| {
                commands::export(c, s, &plan)
            })
        }
        Cmd::ReplayJournal { data_dir } => replay_journal(c, data_dir),
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
                Err(e) => return Ok(Outcome::Usage(format!("--members: {}", e))),
            };
            let plan = ImportPlan {
                file: file.clone(),
                data_dir: data_dir.clone(),
                node_id: *node_id,
                members,
                cluster_id: *cluster_id,
                raft_addr: raft_addr.clone(),
            };
            commands::import(c, &plan)
        }
    }
}

/// `entry DIR INDEX`, or `entry INDEX` of a flash image.
fn entry(
    c: &mut Console<'_>,
    args: &[String],
    image: &Image,
    group: GroupId,
) -> io::Result<Outcome> {
    let (dir, index) = match (args, image.flash.is_some()) {
        ([i], true) => (None, i),
        ([d, i], false) => (Some(Path::new(d)), i),
        _ => {
            return Ok(Outcome::Usage(
                "entry takes DIR INDEX, or INDEX with --flash FILE --geometry ...".into(),
            ))
        }
    };
    let Ok(index) = index.parse::<LogIndex>() else {
        return Ok(Outcome::Usage(format!("`{}` is not a log index", index)));
    };
    with_source(c, dir, image, group, |c, s| {
        commands::entry(c, s, group, index)
    })
}

/// `snapshot`: a snapshot file (a node's own or an export), or a group's current snapshot in a
/// data dir or flash image.
fn snapshot(
    c: &mut Console<'_>,
    file: Option<&Path>,
    image: &Image,
    group: GroupId,
    keys: bool,
    dump: bool,
) -> io::Result<Outcome> {
    let snap = match file {
        Some(f) if image.flash.is_none() && !f.is_dir() => {
            read_snapshot_file(f).map_err(SourceError::Damaged)
        }
        dir => open(dir, image, group).and_then(|s| {
            s.snapshot(group)?.ok_or_else(|| {
                SourceError::Usage(format!(
                    "group {} of {} has no snapshot",
                    group,
                    s.path().display()
                ))
            })
        }),
    };
    match snap {
        Ok(snap) => commands::snapshot(c, &snap, keys, dump),
        // A damaged snapshot is the command's answer: say it where errors go.
        Err(SourceError::Damaged(p)) => {
            writeln!(c.err, "shoal-inspect: {}", p)?;
            Ok(Outcome::Damage)
        }
        Err(e) => c.source_error(e),
    }
}

/// `summary` and `verify`: read everything (checking snapshot data too), with a progress bar
/// over the log when standard error is a terminal, then report.
fn overview(
    c: &mut Console<'_>,
    target: &Target,
    report: fn(&mut Console<'_>, &shoal_tools::report::Report) -> io::Result<Outcome>,
) -> io::Result<Outcome> {
    with_source(c, target.dir.as_deref(), &target.image, 0, |c, s| {
        let mut progress = Progress::new(if io::stderr().is_terminal() {
            s.log_bytes()
        } else {
            0
        });
        let req = ReadRequest {
            group: None,
            verify_snapshots: true,
        };
        let read = s.read(req, &mut progress);
        progress.done();
        match read {
            Ok(r) => report(c, &r),
            Err(e) => c.source_error(e),
        }
    })
}

/// A progress bar over log bytes, only for large logs.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        let bar = (total_bytes > 8 << 20).then(|| {
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

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Visitor for Progress {
    fn bytes(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
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
