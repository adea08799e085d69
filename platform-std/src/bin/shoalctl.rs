//! `shoalctl`: operate a Shoal cluster from the shell — every DtKV operation, watch, locks around
//! a command, membership, leader transfer, snapshots, status, groups, users and roles.
//!
//! Exit codes: 0 success; 1 the cluster answered with a definite failure; 2 usage error; 3 the
//! outcome is unknown (a write was sent and its answer lost); 4 no node took the request (it
//! did not happen).
//!
//! This file is the command line (global flags, the commands) and the loop of `batch`; each
//! command family runs in a module of its own: `kv` (keys), `lease` (leases, locks, elections),
//! `watch`, `txn`, `cluster` (members, leader, snapshots, status, health, groups) and `access`
//! (auth, users, roles). `answer` is what they print.

use std::io::BufRead;
use std::time::Duration;

#[path = "shoalctl/access.rs"]
mod access;
#[path = "shoalctl/answer.rs"]
mod answer;
#[path = "shoalctl/cluster.rs"]
mod cluster;
#[path = "shoalctl/input.rs"]
mod input;
#[path = "shoalctl/kv.rs"]
mod kv;
#[path = "shoalctl/lease.rs"]
mod lease;
#[path = "shoalctl/ops.rs"]
mod ops;
#[path = "shoalctl/read.rs"]
mod read;
#[path = "shared/tls_flags.rs"]
mod tls_flags;
#[path = "shoalctl/txn.rs"]
mod txn;
#[path = "shoalctl/watch.rs"]
mod watch;

use answer::{error_json, exit_with_error, print_answer, print_error, say, Answer};
use clap::{Parser, Subcommand, ValueEnum};
use shoal_client::{Client, ClientConfig, ClientError};

const AFTER_HELP: &str = "\
Exit codes: 0 success; 1 the cluster answered with a definite failure (not found, CAS mismatch,
lock held, ...); 2 usage error; 3 indeterminate (a write was sent but its answer was lost: it
may or may not have happened); 4 unavailable (no node took the request: it did not happen).

Values are printed raw in text output. In JSON output a value is a string: the UTF-8 text when
the bytes are valid UTF-8 (\"value_encoding\": \"utf8\"), else standard base64
(\"value_encoding\": \"base64\").";

/// Operate a Shoal cluster: read and write DtKV keys, watch, lock, manage members and groups.
#[derive(Parser, Debug)]
#[command(name = "shoalctl", version, after_help = AFTER_HELP)]
struct Cli {
    /// Client addresses (HOST:PORT) of one or more nodes, comma separated; the leader is found
    /// from any of them.
    #[arg(
        long,
        global = true,
        env = "SHOAL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7002"
    )]
    endpoints: Vec<String>,
    /// The Raft group to address (0 is the default group).
    #[arg(long, global = true, default_value_t = 0)]
    group: u32,
    /// Output format: `text` for people, `json` for one JSON object per answer.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Overall deadline of each request, retries included (e.g. 500ms, 10s, 2m).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Log in as this user (clusters with auth enabled): NAME:PASSWORD, or NAME to be asked
    /// for the password (or to take it from SHOAL_PASSWORD).
    #[arg(
        long,
        global = true,
        env = "SHOAL_USER",
        value_name = "NAME[:PASSWORD]"
    )]
    user: Option<String>,
    /// Refuse to act on any node outside this cluster (shoald's --cluster-id). Without it the
    /// cluster is learnt from the first node that redirects, and no request follows a
    /// redirect into another cluster.
    #[arg(long, global = true, env = "SHOAL_CLUSTER_ID", value_name = "ID")]
    cluster_id: Option<u64>,
    #[command(flatten)]
    tls: tls_flags::ClientTlsFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Human-readable text (tables for lists; `table` is another name for it).
    #[value(alias = "table")]
    Text,
    /// One JSON object per answer.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Consistency {
    /// Linearizable through ReadIndex (any node).
    Linearizable,
    /// Linearizable through the leader's lease (leader only; relies on bounded clock drift).
    Lease,
    /// The contacted node's applied state, possibly stale.
    Local,
}

/// One line of `batch` input: a command with the same syntax as on the command line.
#[derive(Parser, Debug)]
#[command(name = "", no_binary_name = true)]
struct Line {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // The DtKV reads and writes (put, get, del, mkdir, list, cas, put-temp, mkdir-temp, ttl).
    #[command(flatten)]
    Kv(kv::KvCommand),
    /// Hold a lock while COMMAND runs: acquire (waiting up to --wait), export the fencing token
    /// as SHOAL_LOCK_FENCE, renew the lease while the command runs, release, and exit with the
    /// command's exit code. Without a command: `lock acquire KEY --lease ID` holds it under a
    /// lease, `lock release KEY` lets it go (`--force`: a lock another session holds).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Lock {
        /// Acquire or release a lock held under a lease, or release one by force.
        #[command(subcommand)]
        action: Option<lease::LockAction>,
        /// The lock's key.
        #[arg(required = true)]
        key: Option<String>,
        /// Lease length; renewed every third of it while the command runs.
        #[arg(long, value_parser = parse_duration, required = true)]
        lease: Option<Duration>,
        /// How long to wait in the lock's queue (0: fail at once with exit 1 if held).
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        wait: Duration,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Leases: grant one, keep it alive, revoke it, read them. Temporary nodes and locks tied
    /// to a lease (`put-temp --lease`, `mkdir-temp --lease`, `lock acquire --lease`) leave with
    /// it.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Campaign in election NAME with PROPOSAL and hold it: print `NAME.<lease> PROPOSAL` once
    /// elected (the candidate created first leads), and run until stopped or the lease ends.
    /// With --listen, print each new leader instead.
    Elect {
        /// The election (a directory of candidates).
        name: String,
        /// What this candidate proposes (e.g. its address).
        #[arg(required_unless_present = "listen", conflicts_with = "listen")]
        proposal: Option<String>,
        /// Observe: print each new leader's key and proposal.
        #[arg(long)]
        listen: bool,
        /// TTL of the candidate's lease, kept alive while this runs.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        ttl: Duration,
    },
    /// Print changes to keys or directories (a directory covers its subtree; "" everything),
    /// one line or JSON object per event, until interrupted or --count events.
    Watch {
        /// Keys or directories.
        #[arg(required = true)]
        keys: Vec<String>,
        /// First raft index to report (0: from now).
        #[arg(long, default_value_t = 0)]
        from_index: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Membership of the group.
    #[command(subcommand)]
    Member(cluster::MemberCommand),
    /// Leadership.
    #[command(subcommand)]
    Leader(cluster::LeaderCommand),
    /// Take a snapshot now on the contacted node; `snapshot save FILE` also copies it here.
    Snapshot {
        #[command(subcommand)]
        action: Option<cluster::SnapshotCommand>,
    },
    /// The contacted node's view of the group; with --cluster, one row per member, each asked
    /// at its client address (exit 1 unless every member answered and is healthy).
    Status {
        /// Ask every member (found from the contacted node) for its status.
        #[arg(long)]
        cluster: bool,
    },
    /// Whether the contacted node can vouch for every group it hosts (a leader it heard from
    /// within an election timeout; a leader a quorum acknowledged within the lease window) with
    /// no alarm raised: exit 0 if so, else 1, naming each group and alarm and why.
    Health,
    /// Groups hosted by the contacted node.
    #[command(subcommand)]
    Group(cluster::GroupCommand),
    /// Apply a transaction: compares on several keys, then the success operations if all hold,
    /// else the failure operations, whole or not at all. Typed on stdin as three sections
    /// separated by blank lines (compares: `value K = V`, `exists K`, `absent K`,
    /// `update-index K (=|!=|<|>) N`; operations: `put K V`, `del K`, `mkdir K`,
    /// `put-temp K V --ttl D`), or as JSON with --file. Exit 1 if an operation was refused
    /// (nothing applied).
    Txn {
        /// Read the transaction as JSON from this file (`-`: stdin) instead of typed sections:
        /// {"compares": [{"key": K, "value": V} | {"key": K, "exists": BOOL} |
        /// {"key": K, "update_index": N, "cmp": "<"}], "success": [{"op": "put", "key": K,
        /// "value": V} | {"op": "del", "key": K} | {"op": "mkdir", "key": K} |
        /// {"op": "put-temp", "key": K, "value": V, "ttl": "30s"}], "failure": [...]}
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
    },
    /// Turn checking of users and permissions on or off (needs the root role once on).
    #[command(subcommand)]
    Auth(access::AuthCommand),
    /// Users: who may log in, and which roles they hold.
    #[command(subcommand)]
    User(access::UserCommand),
    /// Roles: what their holders may read and write.
    #[command(subcommand)]
    Role(access::RoleCommand),
    /// Read commands from stdin, one per line (shell-like quoting, `#` comments), and answer
    /// each with one JSON line. Exit code: 0 if every line succeeded, else the last failing
    /// line's code. `lock`, `watch`, `txn` and `batch` are not allowed in batch input.
    Batch,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 10s or 2m: {e}"))
}

fn main() {
    shoal_cli_docs::answer_and_exit::<Cli>();
    let cli = Cli::try_parse().unwrap_or_else(|e| input::usage_exit(e));
    let user = match cli
        .user
        .as_deref()
        .map(|u| access::name_and_password(u, true, "Password of"))
    {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(message)) => exit_with_error(cli.output, &ClientError::BadRequest { message }),
    };
    let config = ClientConfig {
        endpoints: cli.endpoints.clone(),
        group: cli.group,
        timeout: cli.timeout,
        attempt_timeout: cli.timeout.min(Duration::from_secs(3)),
        connect_timeout: cli.timeout.min(Duration::from_secs(1)),
        user,
        tls: match cli.tls() {
            Ok(t) => t,
            Err(message) => exit_with_error(cli.output, &ClientError::BadRequest { message }),
        },
        cluster: cli.cluster_id,
    };
    let client = match Client::new(config) {
        Ok(c) => c,
        Err(e) => exit_with_error(cli.output, &e),
    };
    let code = smol::block_on(run(&client, &cli, cli.command_ref()));
    std::process::exit(code);
}

impl Cli {
    /// TLS when any TLS flag is given or an endpoint says `https://`.
    fn tls(&self) -> Result<Option<shoal_client::TlsConfig>, String> {
        let on = self.tls.any()
            || self
                .endpoints
                .iter()
                .any(|e| shoal_client::tls::wants_tls(e));
        if !on {
            return Ok(None);
        }
        self.tls.config().map(Some)
    }

    fn command_ref(&self) -> &Command {
        &self.command
    }
}

/// Run one top-level command; returns the exit code.
async fn run(client: &Client, cli: &Cli, command: &Command) -> i32 {
    if let Err(e) = input::check_keys(command) {
        print_error(cli.output, &e);
        return e.exit_code();
    }
    match command {
        Command::Lock {
            action: None,
            key: Some(key),
            lease: Some(lease),
            wait,
            command,
        } => lease::hold(client, cli.output, key, *lease, *wait, command).await,
        Command::Lease(l) => lease::run(client, cli.output, l).await,
        Command::Elect {
            name,
            proposal,
            ttl,
            ..
        } => lease::elect(client, cli.output, name, proposal.as_deref(), *ttl).await,
        Command::Watch {
            keys,
            from_index,
            count,
        } => watch::run(client, cli.output, keys, *from_index, *count).await,
        Command::Batch => run_batch(client).await,
        Command::Txn { file } => txn::run(client, cli.output, file.as_deref()).await,
        other => match execute(client, other).await {
            Ok(answer) => {
                print_answer(cli.output, &answer);
                answer.code
            }
            Err(e) => {
                print_error(cli.output, &e);
                e.exit_code()
            }
        },
    }
}

/// Run a command that gives one answer.
async fn execute(client: &Client, command: &Command) -> Result<Answer, ClientError> {
    match command {
        Command::Kv(k) => kv::execute(client, k).await,
        Command::Lock {
            action: Some(lease::LockAction::Acquire { key, lease, wait }),
            ..
        } => lease::acquire(client, key, *lease, *wait).await,
        Command::Lock {
            action: Some(lease::LockAction::Release { key, force }),
            ..
        } => lease::release(client, key, *force).await,
        Command::Lease(l) => lease::execute(client, l).await,
        Command::Member(m) => cluster::member(client, m).await,
        Command::Leader(l) => cluster::leader(client, l).await,
        Command::Snapshot { action } => cluster::snapshot(client, action.as_ref()).await,
        Command::Status { cluster } => cluster::status(client, *cluster).await,
        Command::Health => cluster::health(client).await,
        Command::Group(g) => cluster::group(client, g).await,
        Command::Auth(a) => access::auth(client, a).await,
        Command::User(u) => access::user(client, u).await,
        Command::Role(r) => access::role(client, r).await,
        Command::Lock { .. }
        | Command::Watch { .. }
        | Command::Txn { .. }
        | Command::Batch
        | Command::Elect { .. } => Err(ClientError::BadRequest {
            message:
                "lock with a command, watch, txn, elect and batch cannot run inside batch input"
                    .into(),
        }),
    }
}

async fn run_batch(client: &Client) -> i32 {
    let stdin = std::io::stdin();
    let mut code = 0;
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("shoalctl: reading stdin: {e}");
                return 2;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let result = match shlex::split(trimmed) {
            None => Err(ClientError::BadRequest {
                message: format!("cannot split `{trimmed}`: unbalanced quotes"),
            }),
            Some(words) => match Line::try_parse_from(words) {
                Ok(parsed) => match input::check_keys(&parsed.command) {
                    Ok(()) => execute(client, &parsed.command).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(ClientError::BadRequest {
                    message: e.to_string().trim().to_string(),
                }),
            },
        };
        let heard = match result {
            Ok(answer) => {
                if answer.code != 0 {
                    code = answer.code;
                }
                say(&answer.json)
            }
            Err(e) => {
                code = e.exit_code();
                say(error_json(&e))
            }
        };
        if !heard {
            break;
        }
    }
    code
}
