//! `export` and `import` as commands: run [`crate::backup`] and say what was written.

use super::{Console, Outcome};
use crate::backup::{self, BackupError, ExportPlan, ImportPlan};
use crate::source::Source;
use crate::text;
use std::io;

/// Export a group of `source` as `plan` says (see [`backup::export`]).
pub fn export(c: &mut Console<'_>, source: &dyn Source, plan: &ExportPlan) -> io::Result<Outcome> {
    let r = match backup::export(source, plan) {
        Ok(r) => r,
        Err(e) => return failure(c, e),
    };
    if c.json {
        c.print_json(&serde_json::to_value(&r).expect("the report serializes"))?;
        return Ok(Outcome::Ok);
    }
    for w in &r.warnings {
        writeln!(c.err, "{}", w)?;
    }
    let h = &r.header;
    writeln!(
        c.out,
        "exported group {} of node {} (cluster {}) at index {} term {} to {}",
        h.group, h.source_node, h.cluster_id, h.index, h.term, r.out
    )?;
    writeln!(
        c.out,
        "  snapshot {} + {} entries applied; {} members; digest {:#018x}; {} bytes",
        r.from_snapshot,
        r.entries_applied,
        text::members(&h.membership),
        h.digest,
        h.data_bytes
    )?;
    if r.entries_not_exported > 0 {
        writeln!(
            c.out,
            "  {} entries after index {} are not exported (not known committed; --upto last \
             includes them)",
            r.entries_not_exported, h.index
        )?;
    }
    Ok(Outcome::Ok)
}

/// Build a data dir as `plan` says (see [`backup::import`]).
pub fn import(c: &mut Console<'_>, plan: &ImportPlan) -> io::Result<Outcome> {
    let r = match backup::import(plan) {
        Ok(r) => r,
        Err(e) => return failure(c, e),
    };
    if c.json {
        c.print_json(&serde_json::to_value(&r).expect("the report serializes"))?;
        return Ok(Outcome::Ok);
    }
    let ids: Vec<String> = r.members.iter().map(|m| m.id.to_string()).collect();
    writeln!(
        c.out,
        "built {} for node {} (cluster {}, raft {}): group {} snapshot at index {} term {}, \
         voters [{}]",
        r.data_dir,
        r.node_id,
        r.cluster_id,
        r.raft_addr,
        r.group,
        r.index,
        r.term,
        ids.join(",")
    )?;
    writeln!(
        c.out,
        "start shoald on it with the same --node-id, --cluster-id and addresses; do the same on \
         every member with the same export"
    )?;
    Ok(Outcome::Ok)
}

fn failure(c: &mut Console<'_>, e: BackupError) -> io::Result<Outcome> {
    Ok(match e {
        BackupError::Usage(s) => Outcome::Usage(s),
        BackupError::Failed(s) => Outcome::Failed(s),
        BackupError::Damaged(ps) => {
            writeln!(
                c.err,
                "shoal-inspect: the source is damaged; nothing was written:"
            )?;
            for p in ps {
                writeln!(c.err, "  {}", p)?;
            }
            Outcome::Damage
        }
    })
}
