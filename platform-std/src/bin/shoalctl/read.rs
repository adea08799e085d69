//! Reads and writes shaped for scripts: a subtree walked with its values (`get --prefix`,
//! `list -r`), directories made with their parents (`mkdir -p`), and values taken from stdin or
//! a file so their size is not bounded by the argument list.

use std::collections::VecDeque;
use std::io::Read;

use shoal_client::{Client, ClientError, KvError, NodeInfo, ReadMode};

/// A subtree read in key order, directory before its contents.
pub struct Walk {
    /// The nodes kept, at most the limit.
    pub nodes: Vec<NodeInfo>,
    /// Whether the limit stopped the walk before the end of the subtree.
    pub truncated: bool,
}

/// Walk the subtree under `dir` (the root when empty), keeping the nodes `keep` accepts, at
/// most `limit` of them. Each directory is listed by its own read, so a subtree that changes
/// during the walk is seen as it was at several indexes.
pub async fn walk(
    client: &Client,
    dir: &str,
    mode: ReadMode,
    limit: Option<usize>,
    keep: impl Fn(&NodeInfo) -> bool,
) -> Result<Walk, ClientError> {
    let mut pending: Vec<VecDeque<NodeInfo>> = vec![children(client, dir.as_bytes(), mode).await?];
    let mut nodes = Vec::new();
    while let Some(level) = pending.last_mut() {
        let Some(node) = level.pop_front() else {
            pending.pop();
            continue;
        };
        let is_dir = node.kind.is_dir();
        let key = node.key.clone();
        if keep(&node) {
            if limit == Some(nodes.len()) {
                return Ok(Walk {
                    nodes,
                    truncated: true,
                });
            }
            nodes.push(node);
        }
        if is_dir {
            match children(client, &key, mode).await {
                Ok(c) => pending.push(c),
                // Removed since its parent was listed: nothing under it to report.
                Err(ClientError::Kv(KvError::NotFound)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Walk {
        nodes,
        truncated: false,
    })
}

async fn children(
    client: &Client,
    dir: &[u8],
    mode: ReadMode,
) -> Result<VecDeque<NodeInfo>, ClientError> {
    let mut c = client.list(dir, mode).await?;
    c.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(c.into())
}

/// `mkdir -p`: every ancestor of `dir`, then `dir` (mkdir of an existing directory succeeds);
/// the index of the last write.
pub async fn mkdir_parents(client: &Client, dir: &str) -> Result<u64, ClientError> {
    for (end, _) in dir.match_indices('.') {
        client.mkdir(&dir[..end]).await?;
    }
    client.mkdir(dir).await
}

/// The value of `put`: the argument, stdin when it is `-`, or the contents of `file`.
pub fn value_of(arg: Option<&str>, file: Option<&str>) -> Result<Vec<u8>, ClientError> {
    let usage = |message: String| ClientError::BadRequest { message };
    match (arg, file) {
        (Some("-"), None) => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| usage(format!("cannot read the value from stdin: {e}")))?;
            Ok(v)
        }
        (Some(v), None) => Ok(v.as_bytes().to_vec()),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| usage(format!("cannot read the value from `{path}`: {e}"))),
        (None, None) => Err(usage(
            "give the value: put KEY VALUE, put KEY - (stdin) or put KEY --file FILE".into(),
        )),
        (Some(_), Some(_)) => Err(usage(
            "give the value once: as an argument or with --file, not both".into(),
        )),
    }
}

/// The refusal for `get` of a directory, which has no value to print.
pub fn is_a_directory(key: &str) -> ClientError {
    ClientError::KvRefused {
        error: KvError::IsDirectory,
        message: format!(
            "`{key}` is a directory, which holds no value: list it with `shoalctl list {key}` \
             or read its values with `shoalctl get --prefix {key}`"
        ),
    }
}
