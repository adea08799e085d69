//! `snapshot`: what a snapshot holds, from an export file, a data dir `.snap` file, a data
//! dir's current snapshot or a flash image's.

use std::io::{self, Write};

use serde_json::json;
use shoal_kv::KvLimits;

use super::{Console, Outcome};
use crate::portable::SnapshotFile;
use crate::state;

/// Its header (checked: framing, size and CRC were verified when it was read), the DtKV
/// header, and with `keys` the key tree (with `values`, their values too).
pub fn snapshot(
    c: &mut Console<'_>,
    snap: &SnapshotFile,
    keys: bool,
    values: bool,
) -> io::Result<Outcome> {
    let h = &snap.header;
    let file = snap.path.display();
    let tree = if keys {
        let restored = state::rebuild(KvLimits::server(), Some((&snap.data, h.index)), &[], |kv| {
            state::key_tree(kv, values)
        });
        match restored {
            Ok(t) => Some(t),
            Err(e) => return Ok(Outcome::Failed(format!("{}: {}", file, e))),
        }
    } else {
        None
    };
    let kvh = state::kv_header(&snap.data).ok();
    if c.json {
        let mut v = json!({
            "file": file.to_string(),
            "source": snap.source,
            "cluster_id": h.cluster_id,
            "source_node": h.source_node,
            "group": h.group,
            "index": h.index,
            "term": h.term,
            "membership": crate::text::members_json(&h.membership),
            "digest": format!("{:#018x}", h.digest),
            "data_bytes": h.data_bytes,
            "data_crc": format!("{:#010x}", h.data_crc),
            "nodes": kvh.map(|k| k.nodes),
            "sessions": kvh.map(|k| k.sessions),
        });
        if let Some(t) = &tree {
            v["keys"] = serde_json::to_value(t).expect("keys serialize");
        }
        c.print_json(&v)?;
        return Ok(Outcome::Ok);
    }
    let out = &mut c.out;
    writeln!(out, "file       {}", file)?;
    writeln!(out, "kind       {}", snap.source.describe())?;
    if h.cluster_id != 0 {
        writeln!(
            out,
            "cluster    {}  (exported from node {})",
            h.cluster_id, h.source_node
        )?;
    }
    writeln!(out, "group      {}", h.group)?;
    writeln!(out, "index      {}  term {}", h.index, h.term)?;
    writeln!(out, "members    {}", crate::text::members(&h.membership))?;
    writeln!(out, "digest     {:#018x}", h.digest)?;
    writeln!(
        out,
        "data       {} bytes, crc {:#010x} (verified)",
        h.data_bytes, h.data_crc
    )?;
    if let Some(k) = kvh {
        writeln!(
            out,
            "dtkv       {} nodes, {} sessions, clock {}ms",
            k.nodes, k.sessions, k.now_ms
        )?;
    }
    let Some(tree) = tree else {
        return Ok(Outcome::Ok);
    };
    writeln!(out)?;
    for n in tree {
        let indent = "  ".repeat(n.depth.saturating_sub(1));
        let mut line = format!("{}{} [{}]", indent, n.key, n.kind);
        if let Some(v) = &n.value {
            line.push_str(&format!(" = {}", crate::text::value(v.as_bytes(), 256)));
        } else if n.value_bytes > 0 {
            line.push_str(&format!(" ({} bytes)", n.value_bytes));
        }
        if n.owner != 0 {
            line.push_str(&format!(" owner {}", n.owner));
        }
        if n.deadline_ms != 0 {
            line.push_str(&format!(" until {}ms", n.deadline_ms));
        }
        writeln!(out, "{}", line)?;
    }
    Ok(Outcome::Ok)
}
