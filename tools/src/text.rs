//! Log entries and DtKV commands in words, for people (`log`, `entry`) and for scripts (JSON).
//!
//! This module only formats: it never reads files and never fails. Bytes that do not decode
//! are shown as what they are (`undecodable command (...)`) rather than hidden.

use serde_json::{json, Value};
use shoal_core::membership::Membership;
use shoal_core::types::EntryKind;
use shoal_kv::system::{
    record_id, GroupRecord, GroupState, MemberRecord, RecordText, AUTH_DIR, GROUPS_DIR, MEMBERS_DIR,
};
use shoal_kv::{Cmp, Command, Compare, Op, TxnOp};
use shoal_std::storage::scan::decode_addr_entry;

/// Longest value shown in a one-line description before it is cut (the `entry` command shows
/// everything).
pub const LINE_VALUE_BYTES: usize = 48;

/// A key as text: UTF-8 when printable, otherwise hex; the root is `(root)`.
pub fn key(k: &[u8]) -> String {
    if k.is_empty() {
        return "(root)".into();
    }
    match std::str::from_utf8(k) {
        Ok(s) if s.chars().all(|c| !c.is_control() && c != ' ') => s.to_string(),
        _ => format!("0x{}", hex(k)),
    }
}

/// A value as text: a quoted, escaped string when it is UTF-8, hex otherwise; cut after `max`
/// bytes with the number of bytes left.
pub fn value(v: &[u8], max: usize) -> String {
    let (shown, rest) = if v.len() > max {
        (&v[..max], v.len() - max)
    } else {
        (v, 0)
    };
    let mut out = match std::str::from_utf8(shown) {
        Ok(s) => format!("\"{}\"", s.escape_debug()),
        // A cut may split a character: fall back to lossy text only when the cut caused it.
        Err(e) if rest > 0 && e.valid_up_to() + 4 > shown.len() => {
            format!("\"{}\"", String::from_utf8_lossy(shown).escape_debug())
        }
        Err(_) => format!("0x{}", hex(shown)),
    };
    if rest > 0 {
        out.push_str(&format!("…(+{} bytes)", rest));
    }
    out
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{:02x}", x)).collect()
}

/// A duration in milliseconds in the shortest exact unit: `5s`, `1500ms`, `2m`, `1h`.
pub fn duration_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    if ms == 0 {
        return "0s".into();
    }
    for (unit, name) in UNITS {
        if ms % unit == 0 {
            return format!("{}{}", ms / unit, name);
        }
    }
    format!("{}ms", ms)
}

/// An entry kind as a word.
pub fn kind(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Normal => "normal",
        EntryKind::Noop => "noop",
        EntryKind::Config => "config",
    }
}

fn ids(set: &[u64]) -> String {
    let inner: Vec<String> = set.iter().map(|id| id.to_string()).collect();
    format!("[{}]", inner.join(","))
}

/// A membership in words: `voters [1,2,3]`, `voters [1,2] observers [4]`, or while joint
/// `joint [1,2,3]+[1,2,3,4]` (old voters + new voters).
pub fn members(m: &Membership) -> String {
    let mut out = if m.joint {
        format!("joint {}+{}", ids(&m.voters), ids(&m.next_voters))
    } else {
        format!("voters {}", ids(&m.voters))
    };
    if !m.observers.is_empty() || (m.joint && !m.next_observers.is_empty()) {
        if m.joint {
            out.push_str(&format!(
                " observers {}+{}",
                ids(&m.observers),
                ids(&m.next_observers)
            ));
        } else {
            out.push_str(&format!(" observers {}", ids(&m.observers)));
        }
    }
    out
}

/// A membership as JSON.
pub fn members_json(m: &Membership) -> Value {
    json!({
        "voters": m.voters.as_slice(),
        "observers": m.observers.as_slice(),
        "joint": m.joint,
        "next_voters": m.next_voters.as_slice(),
        "next_observers": m.next_observers.as_slice(),
    })
}

/// Decode a config entry's payload (a postcard [`Membership`]).
pub fn decode_config(data: &[u8]) -> Result<Membership, String> {
    postcard::from_bytes::<Membership>(data).map_err(|e| format!("config does not decode: {}", e))
}

/// A config entry in words, relative to the membership before it when known:
/// `config voters [1,2,3] → joint [1,2,3]+[1,2,3,4]`.
pub fn config_change(before: Option<&Membership>, after: &Membership) -> String {
    match before {
        Some(b) => format!("config {} → {}", members(b), members(after)),
        None => format!("config ? → {}", members(after)),
    }
}

/// A DtKV command in words (`put app.db.url = "..."`), with the session when it has one.
pub fn command(data: &[u8], max_value: usize) -> String {
    let cmd = match Command::decode(data) {
        Ok(c) => c,
        Err(e) => return format!("undecodable command ({:?}, {} bytes)", e, data.len()),
    };
    let mut out = op(&cmd, max_value);
    if cmd.client_id != 0 {
        out.push_str(&format!("  [client {} seq {}]", cmd.client_id, cmd.seq));
    }
    out
}

fn op(cmd: &Command<'_>, max: usize) -> String {
    match cmd.op {
        Op::Put { key: k, value: v } => format!("put {} = {}", key(k), value(v, max)),
        Op::Remove { key: k } => format!("remove {}", key(k)),
        Op::Mkdir { key: k } => format!("mkdir {}", key(k)),
        Op::BatchPut(pairs) => {
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v, max)))
                .collect();
            format!("batch put ({}) {}", pairs.len(), items.join(", "))
        }
        Op::BatchRemove(keys) => {
            let items: Vec<String> = keys.iter().map(key).collect();
            format!("batch remove ({}) {}", keys.len(), items.join(", "))
        }
        Op::CompareAndSet {
            key: k,
            expect,
            value: v,
        } => match expect {
            Some(e) => format!(
                "cas {} expect {} -> {}",
                key(k),
                value(e, max),
                value(v, max)
            ),
            None => format!("cas {} expect absent -> {}", key(k), value(v, max)),
        },
        Op::PutTemp {
            key: k,
            value: v,
            ttl_ms,
        } => format!(
            "put-temp {} = {} ttl {}",
            key(k),
            value(v, max),
            duration_ms(ttl_ms)
        ),
        Op::MakeTempDir { key: k, ttl_ms } => {
            format!("mkdir-temp {} ttl {}", key(k), duration_ms(ttl_ms))
        }
        Op::UpdateTtl { key: k, ttl_ms } => format!("ttl {} {}", key(k), duration_ms(ttl_ms)),
        Op::TryLock {
            key: k,
            lease_ms,
            wait_ms,
        } => {
            if wait_ms > 0 {
                format!(
                    "lock {} lease {} wait {}",
                    key(k),
                    duration_ms(lease_ms),
                    duration_ms(wait_ms)
                )
            } else {
                format!("lock {} lease {}", key(k), duration_ms(lease_ms))
            }
        }
        Op::Unlock { key: k } => format!("unlock {}", key(k)),
        Op::ForceRemove { key: k } => format!("force remove {}", key(k)),
        Op::ForceUnlock { key: k } => format!("force unlock {}", key(k)),
        Op::UpdateLockLease { key: k, lease_ms } => {
            format!("lease {} {}", key(k), duration_ms(lease_ms))
        }
        Op::Expire => format!("expire @{}ms", cmd.time_ms),
        Op::SysPut { key: k, value: v } => format!("system put {} = {}", key(k), record(k, v)),
        Op::SysCreate { key: k, value: v } => {
            format!("system create {} = {}", key(k), record(k, v))
        }
        Op::SysRemove { key: k } => format!("system remove {}", key(k)),
        Op::LeaseGrant { ttl_ms } => format!("lease grant ttl {}", duration_ms(ttl_ms)),
        Op::LeaseKeepAlive { id } => format!("lease keep-alive {id}"),
        Op::LeaseRevoke { id } => format!("lease revoke {id}"),
        Op::PutTempLease {
            key: k,
            value: v,
            lease,
        } => format!("put-temp {} = {} lease {lease}", key(k), value(v, max)),
        Op::MakeTempDirLease { key: k, lease } => format!("mkdir-temp {} lease {lease}", key(k)),
        Op::TryLockLease { key: k, lease } => format!("lock {} under lease {lease}", key(k)),
        Op::Txn(t) => {
            let list = |items: Vec<String>| format!("[{}]", items.join(", "));
            format!(
                "txn if {} then {} else {}",
                list(t.compares.iter().map(|c| compare(&c, max)).collect()),
                list(t.success.iter().map(|o| txn_op(&o, max)).collect()),
                list(t.failure.iter().map(|o| txn_op(&o, max)).collect()),
            )
        }
    }
}

fn cmp_word(c: Cmp) -> &'static str {
    match c {
        Cmp::Equal => "=",
        Cmp::NotEqual => "!=",
        Cmp::Less => "<",
        Cmp::Greater => ">",
    }
}

fn compare(c: &Compare<'_>, max: usize) -> String {
    match *c {
        Compare::Value { key: k, value: v } => format!("value {} = {}", key(k), value(v, max)),
        Compare::Exists { key: k } => format!("exists {}", key(k)),
        Compare::Absent { key: k } => format!("absent {}", key(k)),
        Compare::UpdateIndex { key: k, cmp, index } => {
            format!("update-index {} {} {index}", key(k), cmp_word(cmp))
        }
    }
}

fn txn_op(o: &TxnOp<'_>, max: usize) -> String {
    // Each operation reads as the single-key write it does.
    let single = Command {
        client_id: 0,
        seq: 0,
        time_ms: 0,
        op: o.as_op(),
    };
    op(&single, max)
}

fn compare_json(c: &Compare<'_>) -> Value {
    match *c {
        Compare::Value { key, value } => {
            json!({"key": bytes_json(key), "value": bytes_json(value)})
        }
        Compare::Exists { key } => json!({"key": bytes_json(key), "exists": true}),
        Compare::Absent { key } => json!({"key": bytes_json(key), "exists": false}),
        Compare::UpdateIndex { key, cmp, index } => {
            json!({"key": bytes_json(key), "update_index": index, "cmp": cmp_word(cmp)})
        }
    }
}

fn txn_op_json(o: &TxnOp<'_>) -> Value {
    match *o {
        TxnOp::Put { key, value } => {
            json!({"op": "put", "key": bytes_json(key), "value": bytes_json(value)})
        }
        TxnOp::Remove { key } => json!({"op": "remove", "key": bytes_json(key)}),
        TxnOp::Mkdir { key } => json!({"op": "mkdir", "key": bytes_json(key)}),
        TxnOp::PutTemp { key, value, ttl_ms } => json!({"op": "put_temp", "key": bytes_json(key),
            "value": bytes_json(value), "ttl_ms": ttl_ms}),
    }
}

/// A value of the reserved subtree `__shoal` in words when it is a record Shoal defines
/// (`member raft 10.0.0.4:7001 client 10.0.0.4:7002`, `group active voters [1, 2, 3]`), else
/// as any value.
pub fn record(k: &[u8], v: &[u8]) -> String {
    if is_auth_record(k) {
        return auth_hidden(v);
    }
    let mut group = None;
    match RecordText::of(k, v, &mut group) {
        Some(t) => t.to_string(),
        None => value(v, LINE_VALUE_BYTES),
    }
}

/// A user, role or key record of shoald's auth: password hashes and the token key, which the
/// tool never prints (exports carry them whole).
fn is_auth_record(k: &[u8]) -> bool {
    k.strip_prefix(AUTH_DIR)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'.')
}

fn auth_hidden(v: &[u8]) -> String {
    format!("auth record, {} bytes (hashes and keys not shown)", v.len())
}

fn group_state(s: GroupState) -> &'static str {
    match s {
        GroupState::Active => "active",
        GroupState::Removed => "removed",
    }
}

/// [`record`] as JSON: `{"member": {...}}`, `{"group": {...}}` or the value as text.
pub fn record_json(k: &[u8], v: &[u8]) -> Value {
    if is_auth_record(k) {
        return json!({ "auth_record": { "bytes": v.len() } });
    }
    if record_id(k, MEMBERS_DIR).is_some() {
        if let Ok(m) = MemberRecord::decode(v) {
            return json!({"member": {"raft_addr": m.raft_addr, "client_addr": m.client_addr}});
        }
    }
    if record_id(k, GROUPS_DIR).is_some() {
        if let Ok(g) = GroupRecord::decode(v) {
            return json!({"group": {"state": group_state(g.state),
                "members": g.members.as_slice()}});
        }
    }
    bytes_json(v)
}

fn bytes_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

/// A DtKV command as JSON: `{"op": "put", "key": ..., "value": ..., "client_id": ...}`. Text
/// is given as a string when it is UTF-8 and as `{"hex": "..."}` otherwise.
pub fn command_json(data: &[u8]) -> Value {
    let cmd = match Command::decode(data) {
        Ok(c) => c,
        Err(e) => return json!({ "op": "undecodable", "error": format!("{:?}", e) }),
    };
    let mut v = match cmd.op {
        Op::Put { key, value } => {
            json!({"op": "put", "key": bytes_json(key), "value": bytes_json(value)})
        }
        Op::Remove { key } => json!({"op": "remove", "key": bytes_json(key)}),
        Op::Mkdir { key } => json!({"op": "mkdir", "key": bytes_json(key)}),
        Op::BatchPut(pairs) => json!({"op": "batch_put", "items": pairs
            .iter()
            .map(|(k, v)| json!({"key": bytes_json(k), "value": bytes_json(v)}))
            .collect::<Vec<_>>()}),
        Op::BatchRemove(keys) => json!({"op": "batch_remove", "keys": keys
            .iter()
            .map(bytes_json)
            .collect::<Vec<_>>()}),
        Op::CompareAndSet { key, expect, value } => json!({"op": "cas", "key": bytes_json(key),
            "expect": expect.map(bytes_json), "value": bytes_json(value)}),
        Op::PutTemp { key, value, ttl_ms } => json!({"op": "put_temp", "key": bytes_json(key),
            "value": bytes_json(value), "ttl_ms": ttl_ms}),
        Op::MakeTempDir { key, ttl_ms } => {
            json!({"op": "mkdir_temp", "key": bytes_json(key), "ttl_ms": ttl_ms})
        }
        Op::UpdateTtl { key, ttl_ms } => {
            json!({"op": "update_ttl", "key": bytes_json(key), "ttl_ms": ttl_ms})
        }
        Op::TryLock {
            key,
            lease_ms,
            wait_ms,
        } => json!({"op": "lock", "key": bytes_json(key),
            "lease_ms": lease_ms, "wait_ms": wait_ms}),
        Op::Unlock { key } => json!({"op": "unlock", "key": bytes_json(key)}),
        Op::ForceRemove { key } => json!({"op": "force_remove", "key": bytes_json(key)}),
        Op::ForceUnlock { key } => json!({"op": "force_unlock", "key": bytes_json(key)}),
        Op::UpdateLockLease { key, lease_ms } => {
            json!({"op": "update_lease", "key": bytes_json(key), "lease_ms": lease_ms})
        }
        Op::Expire => json!({"op": "expire"}),
        Op::SysPut { key, value } => {
            json!({"op": "system_put", "key": bytes_json(key), "value": record_json(key, value)})
        }
        Op::SysCreate { key, value } => {
            json!({"op": "system_create", "key": bytes_json(key), "value": record_json(key, value)})
        }
        Op::SysRemove { key } => json!({"op": "system_remove", "key": bytes_json(key)}),
        Op::LeaseGrant { ttl_ms } => json!({"op": "lease_grant", "ttl_ms": ttl_ms}),
        Op::LeaseKeepAlive { id } => json!({"op": "lease_keep_alive", "id": id}),
        Op::LeaseRevoke { id } => json!({"op": "lease_revoke", "id": id}),
        Op::PutTempLease { key, value, lease } => json!({"op": "put_temp",
            "key": bytes_json(key), "value": bytes_json(value), "lease": lease}),
        Op::MakeTempDirLease { key, lease } => {
            json!({"op": "mkdir_temp", "key": bytes_json(key), "lease": lease})
        }
        Op::TryLockLease { key, lease } => {
            json!({"op": "lock", "key": bytes_json(key), "lease": lease})
        }
        Op::Txn(t) => json!({"op": "txn",
            "compares": t.compares.iter().map(|c| compare_json(&c)).collect::<Vec<_>>(),
            "success": t.success.iter().map(|o| txn_op_json(&o)).collect::<Vec<_>>(),
            "failure": t.failure.iter().map(|o| txn_op_json(&o)).collect::<Vec<_>>()}),
    };
    v["client_id"] = json!(cmd.client_id);
    v["seq"] = json!(cmd.seq);
    v["time_ms"] = json!(cmd.time_ms);
    v
}

/// One entry in words, given the membership before it (for config entries).
pub fn entry(kind: EntryKind, data: &[u8], config_before: Option<&Membership>) -> String {
    match kind {
        EntryKind::Noop => "noop (new leader)".into(),
        EntryKind::Config => match decode_config(data) {
            Ok(m) => config_change(config_before, &m),
            Err(e) => e,
        },
        EntryKind::Normal => match decode_addr_entry(data) {
            Some(Ok(a)) => format!(
                "address node {} raft {} client {}",
                a.id, a.raft_addr, a.client_addr
            ),
            Some(Err(e)) => e,
            None => command(data, LINE_VALUE_BYTES),
        },
    }
}

/// One entry's payload as JSON, given the membership before it.
pub fn entry_json(kind: EntryKind, data: &[u8], config_before: Option<&Membership>) -> Value {
    match kind {
        EntryKind::Noop => json!({"op": "noop"}),
        EntryKind::Config => match decode_config(data) {
            Ok(m) => json!({"op": "config", "before": config_before.map(members_json),
                "after": members_json(&m)}),
            Err(e) => json!({"op": "undecodable", "error": e}),
        },
        EntryKind::Normal => match decode_addr_entry(data) {
            Some(Ok(a)) => json!({"op": "address", "id": a.id, "raft_addr": a.raft_addr,
                "client_addr": a.client_addr}),
            Some(Err(e)) => json!({"op": "undecodable", "error": e}),
            None => command_json(data),
        },
    }
}

/// A classic hex dump: offset, 16 bytes in hex, and their printable ASCII.
pub fn hex_dump(b: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in b.chunks(16).enumerate() {
        let hexes: Vec<String> = chunk.iter().map(|x| format!("{:02x}", x)).collect();
        let ascii: String = chunk
            .iter()
            .map(|&x| {
                if x.is_ascii_graphic() || x == b' ' {
                    x as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{}|\n",
            row * 16,
            hexes.join(" "),
            ascii
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_records_are_never_printed() {
        let hash = b"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        for key in [&b"__shoal.auth.users.alice"[..], b"__shoal.auth"] {
            let text = record(key, hash);
            assert!(!text.contains("argon2"), "{text}");
            assert!(text.contains(&format!("{} bytes", hash.len())), "{text}");
            let json = record_json(key, hash).to_string();
            assert!(!json.contains("argon2"), "{json}");
        }
        // Only the auth subtree: a sibling whose name starts alike is an ordinary record.
        assert!(record(b"__shoal.authors", b"plain").contains("plain"));
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(duration_ms(5000), "5s");
        assert_eq!(duration_ms(1500), "1500ms");
        assert_eq!(duration_ms(120_000), "2m");
        assert_eq!(duration_ms(0), "0s");
    }

    #[test]
    fn commands_read_like_the_operation() {
        let mut buf = [0u8; 256];
        let c = Command {
            client_id: 7,
            seq: 3,
            time_ms: 10,
            op: Op::CompareAndSet {
                key: b"k",
                expect: Some(b"a"),
                value: b"b",
            },
        };
        let n = c.encode(&mut buf).unwrap();
        assert_eq!(
            command(&buf[..n], 48),
            "cas k expect \"a\" -> \"b\"  [client 7 seq 3]"
        );
        let n = Command::expire(99).encode(&mut buf).unwrap();
        assert_eq!(command(&buf[..n], 48), "expire @99ms");
        let compares = [Compare::UpdateIndex {
            key: b"k",
            cmp: Cmp::Less,
            index: 4,
        }];
        let (success, failure) = (
            [TxnOp::Put {
                key: b"k",
                value: b"v",
            }],
            [TxnOp::Remove { key: b"j" }],
        );
        let txn = Command {
            client_id: 0,
            seq: 0,
            time_ms: 1,
            op: Op::Txn(shoal_kv::Txn {
                compares: shoal_kv::Batch::new(&compares),
                success: shoal_kv::Batch::new(&success),
                failure: shoal_kv::Batch::new(&failure),
            }),
        };
        let n = txn.encode(&mut buf).unwrap();
        assert_eq!(
            command(&buf[..n], 48),
            "txn if [update-index k < 4] then [put k = \"v\"] else [remove j]"
        );
        let j = command_json(&buf[..n]);
        assert_eq!(j["compares"][0]["cmp"], "<");
        assert_eq!(j["failure"][0]["op"], "remove");
        for (op, text) in [
            (Op::LeaseGrant { ttl_ms: 10_000 }, "lease grant ttl 10s"),
            (Op::LeaseRevoke { id: 12 }, "lease revoke 12"),
            (
                Op::PutTempLease {
                    key: b"svc",
                    value: b"up",
                    lease: 12,
                },
                "put-temp svc = \"up\" lease 12",
            ),
        ] {
            let c = Command {
                client_id: 0,
                seq: 0,
                time_ms: 1,
                op,
            };
            let n = c.encode(&mut buf).unwrap();
            assert_eq!(command(&buf[..n], 48), text);
        }
    }

    #[test]
    fn joint_configs_show_both_sides() {
        let old = Membership::new(&[1, 2, 3], &[]).unwrap();
        let new = Membership::new(&[1, 2, 3, 4], &[]).unwrap();
        let joint = old.to_joint(&new).unwrap();
        assert_eq!(
            config_change(Some(&old), &joint),
            "config voters [1,2,3] → joint [1,2,3]+[1,2,3,4]"
        );
    }
}
