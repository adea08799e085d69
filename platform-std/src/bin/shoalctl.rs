//! `shoalctl`: operate a Shoal cluster from the shell — every DtKV operation, watch, locks around
//! a command, membership, leader transfer, snapshots, status, groups, users and roles.
//!
//! Exit codes: 0 success; 1 the cluster answered with a definite failure; 2 usage error; 3 the
//! outcome is unknown (a write was sent and its answer lost); 4 no node took the request (it
//! did not happen).

use std::io::{BufRead, Write};
use std::time::Duration;

#[path = "shoalctl/input.rs"]
mod input;
#[path = "shoalctl/lease.rs"]
mod lease;
#[path = "shoalctl/ops.rs"]
mod ops;
#[path = "shoalctl/read.rs"]
mod read;
#[path = "shoalctl/txn.rs"]
mod txn;

use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use shoal_client::{
    Access, Client, ClientConfig, ClientError, NodeInfo, Permission, ReadMode, WatchItem,
};
use shoal_kv::system::RecordText;

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
    /// CA certificate (PEM) to check the nodes' certificates against; turns TLS on.
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        global = true,
        env = "SHOAL_CACERT",
        value_name = "FILE"
    )]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for nodes with --client-cert-auth.
    #[arg(
        long = "cert",
        id = "tls_cert",
        global = true,
        env = "SHOAL_CERT",
        value_name = "FILE"
    )]
    cert: Option<std::path::PathBuf>,
    /// Key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        env = "SHOAL_KEY",
        value_name = "FILE"
    )]
    key: Option<std::path::PathBuf>,
    /// TLS without checking the nodes' certificates (labs only: anyone in between can read and
    /// change everything).
    #[arg(long, global = true, env = "SHOAL_INSECURE_SKIP_TLS_VERIFY")]
    insecure_skip_tls_verify: bool,
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
    /// Create or replace a value.
    Put {
        /// The key (`app.db.url`); its parent directory must exist.
        key: String,
        /// The value (stored as the UTF-8 bytes of this argument); `-` reads it from stdin.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value's bytes from this file (for values too large for an argument).
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
    },
    /// Read a key; text output prints the value, JSON the whole node. With --prefix, every
    /// value under the directory KEY: text prints each key then its value on the next line.
    Get {
        /// The key (with --prefix: a directory, "" for everything).
        key: String,
        /// Read every value in the subtree under KEY, in key order.
        #[arg(long)]
        prefix: bool,
        /// With --prefix: print the keys only.
        #[arg(long, requires = "prefix")]
        keys_only: bool,
        /// With --prefix: at most this many values.
        #[arg(long, requires = "prefix")]
        limit: Option<usize>,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
    },
    /// Remove a value, a temporary node or an empty directory.
    #[command(alias = "rm", alias = "remove")]
    Del {
        /// The key.
        key: String,
        /// Remove a temporary node whichever session owns it (an operator's override; the
        /// server logs who asked).
        #[arg(long)]
        force: bool,
    },
    /// Create a directory (succeeds if it already is one).
    Mkdir {
        /// The directory's key.
        dir: String,
        /// Create the missing parent directories too.
        #[arg(short, long)]
        parents: bool,
    },
    /// List a directory's children (the root when DIR is omitted); directories end in `/`.
    /// With -r, the whole subtree in key order, values after a tab.
    #[command(alias = "ls")]
    List {
        /// The directory's key.
        #[arg(default_value = "")]
        dir: String,
        /// List the whole subtree, with values. Each directory is read separately, so a
        /// subtree changing meanwhile is seen at several indexes.
        #[arg(short, long)]
        recursive: bool,
        /// With -r: print the keys only.
        #[arg(long, requires = "recursive")]
        keys_only: bool,
        /// With -r: at most this many nodes.
        #[arg(long, requires = "recursive")]
        limit: Option<usize>,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
    },
    /// Compare-and-set: `cas KEY EXPECTED NEW`, or `cas KEY --expect-absent NEW`.
    Cas {
        /// The key.
        key: String,
        /// EXPECTED then NEW, or only NEW with --expect-absent.
        #[arg(num_args = 1..=2, required = true, value_names = ["EXPECTED", "NEW"])]
        values: Vec<String>,
        /// Set only if the key does not exist.
        #[arg(long)]
        expect_absent: bool,
    },
    /// Create or refresh a temporary value: owned by this invocation's session with --ttl, or
    /// tied to a lease with --lease (then any later run may change it, and it lives as long as
    /// the lease).
    PutTemp {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Time to live (e.g. 30s).
        #[arg(long, value_parser = parse_duration, required_unless_present = "lease", conflicts_with = "lease")]
        ttl: Option<Duration>,
        /// The lease it lives and dies with (`lease grant`).
        #[arg(long, value_name = "ID")]
        lease: Option<u64>,
    },
    /// Create a temporary directory (removed with its contents when its TTL or lease ends).
    MkdirTemp {
        /// The directory's key.
        dir: String,
        /// Time to live (e.g. 30s).
        #[arg(long, value_parser = parse_duration, required_unless_present = "lease", conflicts_with = "lease")]
        ttl: Option<Duration>,
        /// The lease it lives and dies with (`lease grant`).
        #[arg(long, value_name = "ID")]
        lease: Option<u64>,
    },
    /// Give a temporary node a new TTL (only its owner session may; each shoalctl invocation is
    /// a new session, so this works from `batch` mode or the client library).
    Ttl {
        /// The key.
        key: String,
        /// New time to live from now.
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
    },
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
    Member(MemberCommand),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Take a snapshot now on the contacted node; `snapshot save FILE` also copies it here.
    Snapshot {
        #[command(subcommand)]
        action: Option<SnapshotCommand>,
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
    Group(GroupCommand),
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
    Auth(AuthCommand),
    /// Users: who may log in, and which roles they hold.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles: what their holders may read and write.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Read commands from stdin, one per line (shell-like quoting, `#` comments), and answer
    /// each with one JSON line. Exit code: 0 if every line succeeded, else the last failing
    /// line's code. `lock`, `watch`, `txn` and `batch` are not allowed in batch input.
    Batch,
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// List the members.
    List,
    /// Add a node (promoted to voter once caught up, unless --observer).
    Add {
        /// The node's id.
        id: u64,
        /// Its raft address (HOST:PORT).
        raft_addr: String,
        /// Keep it a non-voting observer.
        #[arg(long)]
        observer: bool,
    },
    /// Make an observer a voter.
    Promote {
        /// The node's id.
        id: u64,
    },
    /// Remove a node.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Abandon a membership change stuck between its prepare and commit steps: the group
    /// leaves its joint configuration for the one before the change.
    Abort,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Take a snapshot on the contacted node and copy it here as a portable file (as
    /// `shoal-inspect export` writes) that `shoal-inspect snapshot` checks and
    /// `shoal-inspect import` restores.
    Save {
        /// The file to write.
        file: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LeaderCommand {
    /// Move leadership to voter ID.
    Transfer {
        /// The target node's id.
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List the groups on the contacted node.
    List,
    /// Define group --group for the whole cluster with these voters; every one of them
    /// creates it (the definition goes through group 0's leader).
    Create {
        /// Voters by node id, comma-separated (e.g. 1,2,3); each must be a member of group 0.
        members: String,
    },
    /// Remove group --group from the cluster: every member stops it and deletes its data after
    /// the servers' --group-remove-grace. Group 0 cannot be removed.
    Remove,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Check every request against its user's roles from now on (the user root must exist).
    Enable,
    /// Stop checking (needs the root role).
    Disable,
    /// Whether auth is enabled.
    Status,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user: NAME:PASSWORD, or NAME to be asked for the password. The user root holds
    /// the root role from the start.
    Add {
        /// NAME or NAME:PASSWORD.
        #[arg(value_name = "NAME[:PASSWORD]")]
        account: String,
    },
    /// Delete a user.
    Delete {
        /// The user.
        name: String,
    },
    /// List the users.
    List,
    /// Show a user's roles.
    Get {
        /// The user.
        name: String,
    },
    /// Change a user's password (NAME:PASSWORD, or NAME to be asked); its logins end.
    Passwd {
        /// NAME or NAME:PASSWORD.
        #[arg(value_name = "NAME[:PASSWORD]")]
        account: String,
    },
    /// Grant a role to a user.
    GrantRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
    /// Revoke a role from a user.
    RevokeRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum RoleCommand {
    /// Add a role without permissions.
    Add {
        /// The role.
        name: String,
    },
    /// Delete a role that no user holds.
    Delete {
        /// The role.
        name: String,
    },
    /// List the roles (the built-in root among them).
    List,
    /// Show a role's permissions.
    Get {
        /// The role.
        name: String,
    },
    /// Let the role read, write or both on KEY (with --prefix: KEY's whole subtree; "" with
    /// --prefix is every key).
    GrantPermission {
        /// The role.
        name: String,
        /// What it allows.
        #[arg(value_enum)]
        access: AccessArg,
        /// The key, or the directory with --prefix.
        key: String,
        /// KEY's DtKV subtree, not KEY alone.
        #[arg(long)]
        prefix: bool,
    },
    /// Take the role's permission on KEY (with --prefix: its subtree permission).
    RevokePermission {
        /// The role.
        name: String,
        /// The key.
        key: String,
        /// The subtree permission.
        #[arg(long)]
        prefix: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AccessArg {
    /// Get, list and watch.
    Read,
    /// Every write, temporary nodes and locks.
    Write,
    /// Both.
    Readwrite,
}

impl From<AccessArg> for Access {
    fn from(a: AccessArg) -> Access {
        match a {
            AccessArg::Read => Access::Read,
            AccessArg::Write => Access::Write,
            AccessArg::Readwrite => Access::ReadWrite,
        }
    }
}

/// `NAME:PASSWORD` split, or `NAME` and the password from `SHOAL_PASSWORD` (when `env`) or a
/// prompt on the terminal.
fn name_and_password(spec: &str, env: bool, prompt: &str) -> Result<(String, String), String> {
    if let Some((name, password)) = spec.split_once(':') {
        return Ok((name.to_string(), password.to_string()));
    }
    if env {
        if let Ok(p) = std::env::var("SHOAL_PASSWORD") {
            return Ok((spec.to_string(), p));
        }
    }
    let password = rpassword::prompt_password(format!("{prompt} {spec}: "))
        .map_err(|e| format!("no password given for {spec} and none could be asked for: {e}"))?;
    Ok((spec.to_string(), password))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 10s or 2m: {e}"))
}

/// An answer: JSON for `-o json`, text for people, and the exit code (0 unless the answer
/// itself is a failure, as an unhealthy node's health is).
struct Answer {
    json: Value,
    text: String,
    code: i32,
}

impl Answer {
    fn new(json: Value, text: impl Into<String>) -> Answer {
        Answer {
            json,
            text: text.into(),
            code: 0,
        }
    }

    fn with_code(self, code: i32) -> Answer {
        Answer { code, ..self }
    }
}

fn main() {
    shoal_cli_docs::answer_and_exit::<Cli>();
    let cli = Cli::try_parse().unwrap_or_else(|e| input::usage_exit(e));
    let user = match cli
        .user
        .as_deref()
        .map(|u| name_and_password(u, true, "Password of"))
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
        let on = self.cacert.is_some()
            || self.cert.is_some()
            || self.insecure_skip_tls_verify
            || self
                .endpoints
                .iter()
                .any(|e| shoal_client::tls::wants_tls(e));
        if !on {
            return Ok(None);
        }
        shoal_client::TlsConfig::new(&shoal_client::TlsOptions {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            insecure_skip_verify: self.insecure_skip_tls_verify,
        })
        .map(Some)
    }

    fn command_ref(&self) -> &Command {
        &self.command
    }
}

fn exit_with_error(output: Output, e: &ClientError) -> ! {
    print_error(output, e);
    std::process::exit(e.exit_code());
}

fn print_error(output: Output, e: &ClientError) {
    match output {
        Output::Json => {
            say(error_json(e));
        }
        Output::Text => eprintln!("shoalctl: {e}"),
    }
}

/// Print one line on stdout; false when the reader has gone (`shoalctl member list | head -1`).
/// Then there is nobody left to tell: the output is dropped quietly and the exit code stays
/// what the command's outcome makes it (a batch stops, as a shell pipeline's writer would).
fn say(line: impl std::fmt::Display) -> bool {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("shoalctl: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

fn error_json(e: &ClientError) -> Value {
    let mut v = json!({
        "ok": false,
        "class": e.class().as_str(),
        "exit": e.exit_code(),
        "error": e.name(),
        "message": e.to_string(),
    });
    if let Some(kv) = e.kv() {
        v["kv_code"] = json!(kv.code());
    }
    if let ClientError::TxnAborted { succeeded, op, .. } = e {
        v["branch"] = json!(if *succeeded { "success" } else { "failure" });
        v["op"] = json!(op);
    }
    v
}

/// `shoalctl txn`: read the transaction (typed sections on stdin, or JSON from `file`), apply
/// it, and answer; returns the exit code.
async fn run_txn(client: &Client, output: Output, file: Option<&str>) -> i32 {
    let read = match file {
        Some(path) => {
            let doc = if path == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            };
            doc.map_err(|e| format!("cannot read the transaction from `{path}`: {e}"))
                .and_then(|doc| txn::from_json(&doc))
        }
        None => read_typed_txn(),
    };
    let transaction = match read {
        Ok(t) => t,
        Err(message) => {
            let e = ClientError::BadRequest { message };
            print_error(output, &e);
            return e.exit_code();
        }
    };
    match client.txn(transaction.clone()).await {
        Ok(out) => {
            print_answer(output, &txn::answer(&transaction, &out));
            0
        }
        Err(e) => {
            print_error(output, &e);
            e.exit_code()
        }
    }
}

/// Typed transaction sections from stdin, with a prompt per section at a terminal.
fn read_typed_txn() -> Result<shoal_client::Transaction, String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let prompt = stdin.is_terminal();
    let mut typed = txn::Typed::default();
    let mut shown = None;
    let mut lines = stdin.lock().lines();
    while let Some(section) = typed.section() {
        if prompt && shown != Some(section) {
            shown = Some(section);
            eprintln!("{}", section.prompt());
        }
        let Some(line) = lines.next() else { break };
        typed.line(&line.map_err(|e| format!("reading stdin: {e}"))?)?;
    }
    Ok(typed.finish())
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
        } => run_lock(client, cli.output, key, *lease, *wait, command).await,
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
        } => run_watch(client, cli.output, keys, *from_index, *count).await,
        Command::Batch => run_batch(client).await,
        Command::Txn { file } => run_txn(client, cli.output, file.as_deref()).await,
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

fn print_answer(output: Output, answer: &Answer) {
    match output {
        Output::Json => {
            say(&answer.json);
        }
        Output::Text => {
            if !answer.text.is_empty() {
                say(&answer.text);
            }
        }
    }
}

fn mode(c: Consistency) -> ReadMode {
    match c {
        Consistency::Linearizable => ReadMode::Linearizable,
        Consistency::Lease => ReadMode::Lease,
        Consistency::Local => ReadMode::Local,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A value for JSON: UTF-8 text when valid, else base64.
fn value_json(bytes: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (json!(s), "utf8"),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            "base64",
        ),
    }
}

fn node_json(n: &NodeInfo) -> Value {
    let (value, encoding) = value_json(&n.value);
    json!({
        "key": text(&n.key),
        "kind": format!("{:?}", n.kind),
        "value": value,
        "value_encoding": encoding,
        "create_index": n.create_index,
        "update_index": n.update_index,
        "owner": n.owner,
        "deadline_ms": n.deadline_ms,
        "fence": n.fence,
        "count": n.count,
    })
}

/// The answer of `get --prefix` and `list -r`: each node's key (a directory's with `/`), then
/// unless `keys_only` its value after `separator`.
fn walk_answer(walk: &read::Walk, keys_only: bool, separator: &str) -> Answer {
    let lines: Vec<String> = walk
        .nodes
        .iter()
        .map(|n| match (n.kind.is_dir(), keys_only) {
            (true, _) => format!("{}/", text(&n.key)),
            (false, true) => text(&n.key),
            (false, false) => format!("{}{separator}{}", text(&n.key), text(&n.value)),
        })
        .collect();
    let items: Vec<Value> = walk
        .nodes
        .iter()
        .map(|n| {
            let mut j = node_json(n);
            if keys_only {
                j.as_object_mut().map(|o| o.remove("value"));
                j.as_object_mut().map(|o| o.remove("value_encoding"));
            }
            j
        })
        .collect();
    Answer::new(
        json!({"ok": true, "nodes": items, "count": items.len(), "truncated": walk.truncated}),
        lines.join("\n"),
    )
}

fn written(index: u64) -> Answer {
    Answer::new(
        json!({"ok": true, "index": index}),
        format!("ok (index {index})"),
    )
}

/// Run a command that gives one answer.
async fn execute(client: &Client, command: &Command) -> Result<Answer, ClientError> {
    let usage = |m: String| ClientError::BadRequest { message: m };
    Ok(match command {
        Command::Put { key, value, file } => {
            let value = read::value_of(value.as_deref(), file.as_deref())?;
            written(client.put(key, value).await?)
        }
        Command::Get {
            key,
            prefix: true,
            keys_only,
            limit,
            consistency,
        } => {
            let walk = read::walk(client, key, mode(*consistency), *limit, |n| {
                !n.kind.is_dir()
            })
            .await?;
            walk_answer(&walk, *keys_only, "\n")
        }
        Command::Get {
            key, consistency, ..
        } => match client.get(key, mode(*consistency)).await? {
            Some(node) if node.kind.is_dir() => return Err(read::is_a_directory(key)),
            Some(node) => {
                let mut j = node_json(&node);
                j["ok"] = json!(true);
                // The cluster's own records are binary: show them in words.
                let mut group = None;
                match RecordText::of(&node.key, &node.value, &mut group) {
                    Some(record) => {
                        j["record"] = json!(record.to_string());
                        Answer::new(j, record.to_string())
                    }
                    None => Answer::new(j, text(&node.value)),
                }
            }
            None => return Err(ClientError::Kv(shoal_kv::KvError::NotFound)),
        },
        Command::Del { key, force: false } => written(client.remove(key).await?),
        Command::Del { key, force: true } => written(client.force_remove(key).await?),
        Command::Mkdir { dir, parents } => written(if *parents {
            read::mkdir_parents(client, dir).await?
        } else {
            client.mkdir(dir).await?
        }),
        Command::List {
            dir,
            recursive: true,
            keys_only,
            limit,
            consistency,
        } => {
            let walk = read::walk(client, dir, mode(*consistency), *limit, |_| true).await?;
            walk_answer(&walk, *keys_only, "\t")
        }
        Command::List {
            dir, consistency, ..
        } => {
            let children = client.list(dir, mode(*consistency)).await?;
            let lines: Vec<String> = children
                .iter()
                .map(|c| {
                    let suffix = if c.kind.is_dir() { "/" } else { "" };
                    format!("{}{suffix}", text(&c.key))
                })
                .collect();
            let items: Vec<Value> = children.iter().map(node_json).collect();
            Answer::new(json!({"ok": true, "children": items}), lines.join("\n"))
        }
        Command::Cas {
            key,
            values,
            expect_absent,
        } => {
            let (expect, new) =
                match (values.as_slice(), expect_absent) {
                    ([new], true) => (None, new),
                    ([expected, new], false) => (Some(expected.as_bytes()), new),
                    (_, true) => return Err(usage(
                        "with --expect-absent give only the new value: cas KEY --expect-absent NEW"
                            .into(),
                    )),
                    (_, false) => {
                        return Err(usage(
                            "give the expected and the new value: cas KEY EXPECTED NEW \
                         (or cas KEY --expect-absent NEW)"
                                .into(),
                        ))
                    }
                };
            written(client.cas(key, expect, new).await?)
        }
        Command::PutTemp {
            key,
            value,
            lease: Some(id),
            ..
        } => written(client.put_temp_lease(key, value, *id).await?),
        Command::PutTemp {
            key,
            value,
            ttl: Some(ttl),
            ..
        } => written(client.put_temp(key, value, *ttl).await?),
        Command::MkdirTemp {
            dir,
            lease: Some(id),
            ..
        } => written(client.make_temp_dir_lease(dir, *id).await?),
        Command::MkdirTemp {
            dir,
            ttl: Some(ttl),
            ..
        } => written(client.make_temp_dir(dir, *ttl).await?),
        Command::PutTemp { .. } | Command::MkdirTemp { .. } => {
            return Err(usage("give --ttl or --lease".into()))
        }
        Command::Lock {
            action: Some(lease::LockAction::Acquire { key, lease, wait }),
            ..
        } => lease::acquire(client, key, *lease, *wait).await?,
        Command::Lock {
            action: Some(lease::LockAction::Release { key, force }),
            ..
        } => lease::release(client, key, *force).await?,
        Command::Lease(l) => lease::execute(client, l).await?,
        Command::Ttl { key, ttl } => written(client.update_ttl(key, *ttl).await?),
        Command::Member(m) => match m {
            MemberCommand::List => {
                let members = client.members().await?;
                let text = input::member_table(&members);
                let items: Vec<Value> = members.iter().map(member_json).collect();
                Answer::new(json!({"ok": true, "members": items}), text)
            }
            MemberCommand::Add {
                id,
                raft_addr,
                observer,
            } => written(client.add_member(*id, raft_addr.clone(), *observer).await?),
            MemberCommand::Promote { id } => written(client.promote_member(*id).await?),
            MemberCommand::Remove { id } => written(client.remove_member(*id).await?),
            MemberCommand::Abort => written(client.abort_member_change().await?),
        },
        Command::Leader(LeaderCommand::Transfer { id }) => {
            written(client.transfer_leader(*id).await?)
        }
        Command::Snapshot { action: None } => written(client.snapshot().await?),
        Command::Snapshot {
            action: Some(SnapshotCommand::Save { file, force }),
        } => {
            let saved = ops::save(client, file, *force).await?;
            let h = &saved.header;
            Answer::new(
                json!({"ok": true, "file": file.display().to_string(), "node_id": h.source_node,
                       "group": h.group, "index": h.index, "term": h.term,
                       "data_bytes": h.data_bytes, "data_crc": format!("{:#010x}", h.data_crc),
                       "file_bytes": saved.file_bytes}),
                format!(
                    "saved the snapshot of node {} group {} at index {} (term {}) to {}: {} bytes, data CRC-32C {:#010x} checked",
                    h.source_node, h.group, h.index, h.term, file.display(), saved.file_bytes, h.data_crc
                ),
            )
        }
        Command::Status { cluster: true } => {
            let rows = ops::cluster(client).await?;
            let all_well = rows.iter().all(ops::Row::healthy);
            Answer::new(ops::cluster_json(&rows), ops::cluster_table(&rows))
                .with_code(if all_well { 0 } else { 1 })
        }
        Command::Status { cluster: false } => {
            let s = client.status().await?;
            let members: Vec<Value> = s.members.iter().map(member_json).collect();
            let j = json!({
                "ok": true,
                "node_id": s.node_id, "group": s.group, "role": s.role, "term": s.term,
                "leader": s.leader, "commit": s.commit, "applied": s.applied,
                "last_index": s.last_index, "snapshot_index": s.snapshot_index,
                "members": members,
            });
            let mut t = format!(
                "node {} group {}: {} term {} leader {} commit {} applied {} last {} snapshot {}",
                s.node_id,
                s.group,
                s.role,
                s.term,
                s.leader,
                s.commit,
                s.applied,
                s.last_index,
                s.snapshot_index
            );
            for m in &s.members {
                t.push_str(&format!("\n  {}\t{}\t{}", m.id, m.role, m.raft_addr));
            }
            Answer::new(j, t)
        }
        Command::Health => {
            let h = client.health().await?;
            let groups: Vec<Value> = h
                .groups
                .iter()
                .map(|g| {
                    json!({"group": g.group, "healthy": g.healthy, "role": g.role,
                           "leader": g.leader, "reason": g.reason, "detail": g.detail})
                })
                .collect();
            let alarms: Vec<Value> = h
                .alarms
                .iter()
                .map(|a| json!({"alarm": a.name, "detail": a.detail}))
                .collect();
            let reasons = h.reasons();
            let j = json!({
                "ok": h.healthy, "healthy": h.healthy, "node_id": h.node_id,
                "running": h.running, "groups": groups, "alarms": alarms, "reasons": reasons,
            });
            let t = if h.healthy {
                let each: Vec<String> = h
                    .groups
                    .iter()
                    .map(|g| format!("group {}: {}, leader {}", g.group, g.role, g.leader))
                    .collect();
                format!("healthy: node {}; {}", h.node_id, each.join("; "))
            } else {
                format!("unhealthy: node {}\n  {}", h.node_id, reasons.join("\n  "))
            };
            Answer::new(j, t).with_code(if h.healthy { 0 } else { 1 })
        }
        Command::Group(g) => match g {
            GroupCommand::List => {
                let groups = client.groups().await?;
                let t = groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                Answer::new(json!({"ok": true, "groups": groups}), t)
            }
            GroupCommand::Create { members } => {
                let members = parse_members(members).map_err(usage)?;
                written(client.create_group(client.config().group, members).await?)
            }
            GroupCommand::Remove => written(client.remove_group(client.config().group).await?),
        },
        Command::Auth(a) => match a {
            AuthCommand::Enable => {
                let index = client.auth_enable().await?;
                Answer::new(
                    json!({"ok": true, "index": index, "enabled": true}),
                    format!("auth enabled (index {index})"),
                )
            }
            AuthCommand::Disable => {
                let index = client.auth_disable().await?;
                Answer::new(
                    json!({"ok": true, "index": index, "enabled": false}),
                    format!("auth disabled (index {index})"),
                )
            }
            AuthCommand::Status => {
                let on = client.auth_status().await?;
                Answer::new(
                    json!({"ok": true, "enabled": on}),
                    format!("auth {}", if on { "enabled" } else { "disabled" }),
                )
            }
        },
        Command::User(u) => match u {
            UserCommand::Add { account } => {
                let (name, password) =
                    name_and_password(account, false, "Password of new user").map_err(usage)?;
                written(client.user_add(&name, &password).await?)
            }
            UserCommand::Passwd { account } => {
                let (name, password) =
                    name_and_password(account, false, "New password of").map_err(usage)?;
                written(client.user_passwd(&name, &password).await?)
            }
            UserCommand::Delete { name } => written(client.user_delete(name).await?),
            UserCommand::GrantRole { name, role } => {
                written(client.user_grant_role(name, role).await?)
            }
            UserCommand::RevokeRole { name, role } => {
                written(client.user_revoke_role(name, role).await?)
            }
            UserCommand::List => names_answer("users", client.user_list().await?),
            UserCommand::Get { name } => {
                let u = client.user_get(name).await?;
                Answer::new(
                    json!({"ok": true, "name": u.name, "roles": u.roles}),
                    format!("user {}\nroles: {}", u.name, u.roles.join(" ")),
                )
            }
        },
        Command::Role(r) => match r {
            RoleCommand::Add { name } => written(client.role_add(name).await?),
            RoleCommand::Delete { name } => written(client.role_delete(name).await?),
            RoleCommand::List => names_answer("roles", client.role_list().await?),
            RoleCommand::Get { name } => {
                let r = client.role_get(name).await?;
                let perms: Vec<Value> = r
                    .permissions
                    .iter()
                    .map(|p| {
                        json!({"access": p.access.as_str(), "key": text(&p.key), "prefix": p.prefix})
                    })
                    .collect();
                let mut t = format!("role {}", r.name);
                for p in &r.permissions {
                    let what = if p.prefix { "prefix" } else { "key" };
                    t.push_str(&format!(
                        "\n  {}\t{what}\t{:?}",
                        p.access.as_str(),
                        text(&p.key)
                    ));
                }
                Answer::new(json!({"ok": true, "name": r.name, "permissions": perms}), t)
            }
            RoleCommand::GrantPermission {
                name,
                access,
                key,
                prefix,
            } => {
                let permission = Permission {
                    access: (*access).into(),
                    key: key.as_bytes().to_vec(),
                    prefix: *prefix,
                };
                written(client.role_grant_permission(name, permission).await?)
            }
            RoleCommand::RevokePermission { name, key, prefix } => written(
                client
                    .role_revoke_permission(name, key.as_bytes(), *prefix)
                    .await?,
            ),
        },
        Command::Lock { .. }
        | Command::Watch { .. }
        | Command::Txn { .. }
        | Command::Batch
        | Command::Elect { .. } => {
            return Err(usage(
                "lock with a command, watch, txn, elect and batch cannot run inside batch input"
                    .into(),
            ))
        }
    })
}

fn names_answer(what: &str, names: Vec<String>) -> Answer {
    let t = names.join("\n");
    Answer::new(json!({"ok": true, what: names}), t)
}

fn member_json(m: &shoal_client::MemberInfo) -> Value {
    json!({"id": m.id, "raft_addr": m.raft_addr, "client_addr": m.client_addr, "role": m.role,
           "match_index": m.match_index})
}

fn parse_members(s: &str) -> Result<Vec<u64>, String> {
    let ids: Vec<u64> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.contains('=') {
                return Err(format!(
                    "member `{p}`: name members by node id only (1,2,3); their addresses come from the cluster's member records"
                ));
            }
            p.parse::<u64>()
                .map_err(|_| format!("member `{p}` is not a node id"))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err("name at least one member".into());
    }
    Ok(ids)
}

async fn run_lock(
    client: &Client,
    output: Output,
    key: &str,
    lease: Duration,
    wait: Duration,
    command: &[String],
) -> i32 {
    let guard = match client.lock(key, lease, wait).await {
        Ok(g) => g,
        Err(e) => {
            print_error(output, &e);
            return e.exit_code();
        }
    };
    let fence = guard.fence();
    let (program, args) = command.split_first().expect("clap requires a command");
    let child = std::process::Command::new(program)
        .args(args)
        .env("SHOAL_LOCK_FENCE", fence.to_string())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = guard.release().await;
            print_error(
                output,
                &ClientError::BadRequest {
                    message: format!("cannot run `{program}`: {e}"),
                },
            );
            return 2;
        }
    };
    let status = smol::unblock(move || child.wait()).await;
    let guard_lost = guard.is_lost();
    if guard_lost {
        eprintln!(
            "shoalctl: warning: the lock `{key}` was lost while the command ran (a lease renewal \
             was refused); another client may have held it"
        );
    }
    if let Err(e) = guard.release().await {
        eprintln!("shoalctl: releasing the lock `{key}` failed (its lease will end it): {e}");
    }
    let code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        }
        Err(e) => {
            eprintln!("shoalctl: waiting for `{program}` failed: {e}");
            2
        }
    };
    if output == Output::Json {
        let lost = guard_lost;
        println!(
            "{}",
            json!({"ok": code == 0 && !lost, "key": key, "fence": fence, "exit": code, "lost": lost})
        );
    }
    code
}

async fn run_watch(
    client: &Client,
    output: Output,
    keys: &[String],
    from_index: u64,
    count: Option<u64>,
) -> i32 {
    let mut stream = client.watch(keys, from_index);
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while count.is_none() || count > Some(seen) {
        let item = match stream.next_item().await {
            Some(i) => i,
            None => return 0,
        };
        let line = match item {
            Ok(WatchItem::Event(ev)) => {
                seen += 1;
                let (value, encoding) = value_json(&ev.value);
                match output {
                    Output::Json => json!({
                        "index": ev.index, "kind": ev.kind, "key": text(&ev.key),
                        "value": value, "value_encoding": encoding,
                    })
                    .to_string(),
                    Output::Text => {
                        format!(
                            "{} {} {} {}",
                            ev.index,
                            ev.kind,
                            text(&ev.key),
                            text(&ev.value)
                        )
                    }
                }
            }
            Ok(WatchItem::Compacted { oldest }) => match output {
                Output::Json => json!({"compacted": true, "oldest": oldest}).to_string(),
                Output::Text => format!(
                    "# compacted: changes before index {oldest} were missed; re-read the keys"
                ),
            },
            Err(e) => {
                print_error(output, &e);
                return e.exit_code();
            }
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return 0; // stdout closed (e.g. `| head`)
        }
    }
    0
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
