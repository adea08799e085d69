//! The DtKV commands (`put`, `get`, `del`, `mkdir`, `list`, `cas`, `put-temp`, `mkdir-temp`,
//! `ttl`) and their answers.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::{Client, ClientError, ReadMode};
use shoal_kv::system::RecordText;

use super::answer::{node_json, text, written, Answer};
use super::{parse_duration, read, Consistency};

/// Reads and writes of keys, flattened into shoalctl's top-level commands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
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
}

fn mode(c: Consistency) -> ReadMode {
    match c {
        Consistency::Linearizable => ReadMode::Linearizable,
        Consistency::Lease => ReadMode::Lease,
        Consistency::Local => ReadMode::Local,
    }
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

/// Run one DtKV command.
pub async fn execute(client: &Client, command: &KvCommand) -> Result<Answer, ClientError> {
    let usage = |message: &str| ClientError::BadRequest {
        message: message.into(),
    };
    Ok(match command {
        KvCommand::Put { key, value, file } => {
            let value = read::value_of(value.as_deref(), file.as_deref())?;
            written(client.put(key, value).await?)
        }
        KvCommand::Get {
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
        KvCommand::Get {
            key, consistency, ..
        } => get(client, key, mode(*consistency)).await?,
        KvCommand::Del { key, force: false } => written(client.remove(key).await?),
        KvCommand::Del { key, force: true } => written(client.force_remove(key).await?),
        KvCommand::Mkdir { dir, parents } => written(if *parents {
            read::mkdir_parents(client, dir).await?
        } else {
            client.mkdir(dir).await?
        }),
        KvCommand::List {
            dir,
            recursive: true,
            keys_only,
            limit,
            consistency,
        } => {
            let walk = read::walk(client, dir, mode(*consistency), *limit, |_| true).await?;
            walk_answer(&walk, *keys_only, "\t")
        }
        KvCommand::List {
            dir, consistency, ..
        } => list(client, dir, mode(*consistency)).await?,
        KvCommand::Cas {
            key,
            values,
            expect_absent,
        } => {
            let (expect, new) =
                match (values.as_slice(), expect_absent) {
                    ([new], true) => (None, new),
                    ([expected, new], false) => (Some(expected.as_bytes()), new),
                    (_, true) => return Err(usage(
                        "with --expect-absent give only the new value: cas KEY --expect-absent NEW",
                    )),
                    (_, false) => {
                        return Err(usage(
                            "give the expected and the new value: cas KEY EXPECTED NEW \
                         (or cas KEY --expect-absent NEW)",
                        ))
                    }
                };
            written(client.cas(key, expect, new).await?)
        }
        KvCommand::PutTemp {
            key,
            value,
            lease: Some(id),
            ..
        } => written(client.put_temp_lease(key, value, *id).await?),
        KvCommand::PutTemp {
            key,
            value,
            ttl: Some(ttl),
            ..
        } => written(client.put_temp(key, value, *ttl).await?),
        KvCommand::MkdirTemp {
            dir,
            lease: Some(id),
            ..
        } => written(client.make_temp_dir_lease(dir, *id).await?),
        KvCommand::MkdirTemp {
            dir,
            ttl: Some(ttl),
            ..
        } => written(client.make_temp_dir(dir, *ttl).await?),
        KvCommand::PutTemp { .. } | KvCommand::MkdirTemp { .. } => {
            return Err(usage("give --ttl or --lease"))
        }
        KvCommand::Ttl { key, ttl } => written(client.update_ttl(key, *ttl).await?),
    })
}

/// `get KEY`: the value in text, the whole node in JSON; the cluster's own records in words.
async fn get(client: &Client, key: &str, mode: ReadMode) -> Result<Answer, ClientError> {
    match client.get(key, mode).await? {
        Some(node) if node.kind.is_dir() => Err(read::is_a_directory(key)),
        Some(node) => {
            let mut j = node_json(&node);
            j["ok"] = json!(true);
            // The cluster's own records are binary: show them in words.
            let mut group = None;
            Ok(match RecordText::of(&node.key, &node.value, &mut group) {
                Some(record) => {
                    j["record"] = json!(record.to_string());
                    Answer::new(j, record.to_string())
                }
                None => Answer::new(j, text(&node.value)),
            })
        }
        None => Err(ClientError::Kv(shoal_kv::KvError::NotFound)),
    }
}

/// `list DIR`: the children's keys, a directory's ending in `/`.
async fn list(client: &Client, dir: &str, mode: ReadMode) -> Result<Answer, ClientError> {
    let children = client.list(dir, mode).await?;
    let lines: Vec<String> = children
        .iter()
        .map(|c| {
            let suffix = if c.kind.is_dir() { "/" } else { "" };
            format!("{}{suffix}", text(&c.key))
        })
        .collect();
    let items: Vec<Value> = children.iter().map(node_json).collect();
    Ok(Answer::new(
        json!({"ok": true, "children": items}),
        lines.join("\n"),
    ))
}
