//! Leases from the shell (`lease grant|keep-alive|revoke|list|ttl`), locks held under a lease
//! without a command (`lock acquire|release`) and elections (`elect`). A lease outlives the
//! shoalctl run that granted it, so a later run can keep it alive, tie nodes to it, read it
//! and revoke it by its id.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::protocol::LeaseInfo;
use shoal_client::{Client, ClientError, KvError, LockState, NodeInfo, ReadMode, WatchStream};

use super::answer::{print_answer, print_error, say, text, Answer};
use super::Output;

/// How long a waiting `lock acquire` or `elect` goes without a change before it looks again
/// (a change it was told about wakes it sooner).
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease of TTL; prints its id (the raft index of the grant).
    Grant {
        /// Time to live, renewed whole by each keep-alive (e.g. 10s).
        #[arg(value_parser = super::parse_duration)]
        ttl: Duration,
    },
    /// Keep lease ID alive (renewing every third of its TTL) until stopped; exit 1 when the
    /// lease ends anyway (revoked, or expired while the cluster could not be reached).
    KeepAlive {
        /// The lease.
        id: u64,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    /// End lease ID now, with every temporary node and lock tied to it.
    Revoke {
        /// The lease.
        id: u64,
    },
    /// The live leases: id, TTL, time left, nodes tied.
    List,
    /// Lease ID: its TTL, the time left and the keys tied to it (with auth on, those the user
    /// may read).
    Ttl {
        /// The lease.
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum LockAction {
    /// Take lock KEY under lease ID, waiting while another holds it; it is held as long as
    /// the lease lives (keep it alive with `lease keep-alive`), until `lock release`.
    Acquire {
        /// The lock's key.
        key: String,
        /// The lease the lock is held under.
        #[arg(long, value_name = "ID")]
        lease: u64,
        /// Give up after this long (exit 1, LockHeld) [default: wait as long as the lease lives].
        #[arg(long, value_parser = super::parse_duration)]
        wait: Option<Duration>,
    },
    /// Release lock KEY held under a lease (from any run). Each shoalctl run is a new session,
    /// so a lock a session holds (`lock KEY --lease DUR -- CMD`) needs --force.
    Release {
        /// The lock's key.
        key: String,
        /// Release it whoever holds it, its next waiter getting it: an operator's override,
        /// logged by the server with who asked.
        #[arg(long)]
        force: bool,
    },
}

fn secs(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn lease_json(l: &LeaseInfo) -> Value {
    let keys: Vec<String> = l.keys.iter().map(|k| text(k)).collect();
    json!({"id": l.id, "ttl_ms": l.ttl_ms, "deadline_ms": l.deadline_ms,
           "remaining_ms": l.remaining_ms, "tied": l.tied, "keys": keys})
}

/// A lease command that answers once (all but a continuous `keep-alive`).
pub async fn execute(client: &Client, command: &LeaseCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        LeaseCommand::Grant { ttl } => {
            let l = client.lease_grant(*ttl).await?;
            Answer::new(
                json!({"ok": true, "id": l.id, "ttl_ms": l.ttl_ms, "deadline_ms": l.deadline_ms}),
                format!("lease {} granted with TTL {}", l.id, secs(l.ttl_ms)),
            )
        }
        LeaseCommand::KeepAlive { id, .. } => {
            let l = client.lease_keep_alive(*id).await?;
            Answer::new(
                json!({"ok": true, "id": l.id, "ttl_ms": l.ttl_ms, "deadline_ms": l.deadline_ms}),
                format!("lease {} kept alive with TTL {}", l.id, secs(l.ttl_ms)),
            )
        }
        LeaseCommand::Revoke { id } => {
            let r = client.lease_revoke(*id).await?;
            Answer::new(
                json!({"ok": true, "index": r.index, "removed": r.removed, "granted": r.granted}),
                format!(
                    "lease {id} revoked: {} nodes removed, {} locks passed on (index {})",
                    r.removed, r.granted, r.index
                ),
            )
        }
        LeaseCommand::List => {
            let leases = client.leases(ReadMode::Linearizable).await?;
            let lines: Vec<String> = leases
                .iter()
                .map(|l| {
                    format!(
                        "{}\tttl {}\tremaining {}\t{} tied",
                        l.id,
                        secs(l.ttl_ms),
                        secs(l.remaining_ms),
                        l.tied
                    )
                })
                .collect();
            let items: Vec<Value> = leases.iter().map(lease_json).collect();
            Answer::new(json!({"ok": true, "leases": items}), lines.join("\n"))
        }
        LeaseCommand::Ttl { id } => {
            let l = client.lease_info(*id, ReadMode::Linearizable).await?;
            let mut j = lease_json(&l);
            j["ok"] = json!(true);
            let mut t = format!(
                "lease {} granted with TTL {}, remaining {}",
                l.id,
                secs(l.ttl_ms),
                secs(l.remaining_ms)
            );
            for k in &l.keys {
                t.push_str(&format!("\n  {}", text(k)));
            }
            Answer::new(j, t)
        }
    })
}

/// `lease keep-alive ID`: renew until stopped; returns the exit code.
pub async fn keep_alive(client: &Client, output: Output, id: u64) -> i32 {
    let keeper = match client.keep_alive(id).await {
        Ok(k) => k,
        Err(e) => {
            print_error(output, &e);
            return e.exit_code();
        }
    };
    let l = keeper.lease();
    let shown = match output {
        Output::Json => say(json!({"ok": true, "id": id, "ttl_ms": l.ttl_ms})),
        Output::Text => say(format!(
            "lease {id} kept alive every {} (TTL {}) until stopped",
            secs((l.ttl_ms / 3).max(1)),
            secs(l.ttl_ms)
        )),
    };
    let _ = shown;
    while !keeper.is_lost() {
        smol::Timer::after(Duration::from_millis(200)).await;
    }
    print_error(output, &ClientError::Kv(KvError::LeaseNotFound));
    1
}

/// Wait until `watch` reports a change, or [`RECHECK`] passes.
async fn next_change(watch: &mut WatchStream) {
    smol::future::or(
        async {
            let _ = watch.next_item().await;
        },
        async {
            smol::Timer::after(RECHECK).await;
        },
    )
    .await
}

/// `lock acquire KEY --lease ID`: take the lock, waiting while another holds it.
pub async fn acquire(
    client: &Client,
    key: &str,
    lease: u64,
    wait: Option<Duration>,
) -> Result<Answer, ClientError> {
    let until = wait.map(|w| std::time::Instant::now() + w);
    // Watching before the first try means a release after it is seen.
    let mut watch = client.watch(&[key], 0);
    loop {
        match client.try_lock_lease(key, lease).await {
            Ok(LockState::Held { fence, .. }) => {
                return Ok(Answer::new(
                    json!({"ok": true, "key": key, "fence": fence, "lease": lease}),
                    format!("acquired {key} (fence {fence}, lease {lease})"),
                ))
            }
            Ok(LockState::Queued { .. }) => unreachable!("a lease lock never queues"),
            Err(ClientError::Kv(KvError::LockHeld))
                if until.is_none_or(|u| std::time::Instant::now() < u) =>
            {
                next_change(&mut watch).await
            }
            Err(e) => return Err(e),
        }
    }
}

/// `lock release [--force] KEY`.
pub async fn release(client: &Client, key: &str, force: bool) -> Result<Answer, ClientError> {
    let u = if force {
        client.force_unlock(key).await?
    } else {
        client.unlock(key).await?
    };
    let t = if u.next_owner == 0 {
        format!("released {key}")
    } else {
        format!(
            "released {key}; client {:x} holds it now (fence {})",
            u.next_owner, u.next_fence
        )
    };
    Ok(Answer::new(
        json!({"ok": true, "index": u.index, "key": key, "next_owner": u.next_owner,
               "next_fence": u.next_fence}),
        t,
    ))
}

/// The leader of election `name`: its candidate created first.
fn leader(candidates: &[NodeInfo]) -> Option<&NodeInfo> {
    candidates
        .iter()
        .filter(|n| !n.kind.is_dir())
        .min_by_key(|n| n.create_index)
}

fn leader_line(output: Output, name: &str, n: &NodeInfo) -> String {
    let key = text(&n.key);
    let lease = key.rsplit('.').next().unwrap_or_default().to_string();
    match output {
        Output::Json => json!({"name": name, "leader": key, "lease": lease.parse::<u64>().ok(),
                               "proposal": text(&n.value)})
        .to_string(),
        Output::Text => format!("{key} {}", text(&n.value)),
    }
}

/// `elect NAME PROPOSAL` (campaign and hold) or `elect NAME --listen` (print each new
/// leader's proposal). A candidate is a temporary value `NAME.<lease id>` tied to a lease of
/// `ttl` that this run keeps alive; the one created first leads, the others wait their turn.
/// Returns the exit code (a campaign ends when its lease does).
pub async fn elect(
    client: &Client,
    output: Output,
    name: &str,
    proposal: Option<&str>,
    ttl: Duration,
) -> i32 {
    match elect_inner(client, output, name, proposal, ttl).await {
        Ok(code) => code,
        Err(e) => {
            print_error(output, &e);
            e.exit_code()
        }
    }
}

async fn elect_inner(
    client: &Client,
    output: Output,
    name: &str,
    proposal: Option<&str>,
    ttl: Duration,
) -> Result<i32, ClientError> {
    super::read::mkdir_parents(client, name).await?;
    let mut watch = client.watch(&[name], 0);
    let mut keeper = None;
    if let Some(p) = proposal {
        let lease = client.lease_grant(ttl).await?;
        let k = client.keep_alive(lease.id).await?;
        let key = format!("{name}.{}", lease.id);
        client.put_temp_lease(&key, p, lease.id).await?;
        eprintln!(
            "shoalctl: campaigning for `{name}` as {key} (lease {})",
            lease.id
        );
        keeper = Some((k, key));
    }
    let mut shown: Option<Vec<u8>> = None;
    loop {
        if let Some((k, key)) = &keeper {
            if k.is_lost() {
                eprintln!("shoalctl: the campaign for `{name}` ended: lease of {key} ended");
                return Ok(1);
            }
        }
        let candidates = client.list(name, ReadMode::Linearizable).await?;
        if let Some(n) = leader(&candidates) {
            if shown.as_deref() != Some(&n.key[..]) {
                shown = Some(n.key.clone());
                let ours = keeper
                    .as_ref()
                    .is_some_and(|(_, key)| key.as_bytes() == n.key);
                // A campaigner reports only its own election; a listener every leader.
                if (keeper.is_none() || ours) && !say(leader_line(output, name, n)) {
                    return Ok(0);
                }
            }
        }
        next_change(&mut watch).await;
    }
}

/// Report a lease command's answer, or run it until stopped.
pub async fn run(client: &Client, output: Output, command: &LeaseCommand) -> i32 {
    if let LeaseCommand::KeepAlive { id, once: false } = command {
        return keep_alive(client, output, *id).await;
    }
    match execute(client, command).await {
        Ok(answer) => {
            print_answer(output, &answer);
            answer.code
        }
        Err(e) => {
            print_error(output, &e);
            e.exit_code()
        }
    }
}

/// `lock KEY --lease D -- COMMAND`: run COMMAND holding the lock, with its fencing token in
/// `SHOAL_LOCK_FENCE`; returns the command's exit code.
pub async fn hold(
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
