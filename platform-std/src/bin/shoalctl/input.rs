//! What shoalctl checks before anything is sent: the syntax of every key a command names, so a
//! typo is a usage error (exit 2) at once rather than a refusal from the cluster or, for a
//! watch, a subscription that can never match.

use shoal_client::ClientError;
use shoal_kv::KvLimits;

use super::kv::KvCommand;
use super::{lease, Command};

/// The path rules alone: the length and depth limits are the server's to judge, since only it
/// knows its configuration.
const SYNTAX_ONLY: KvLimits = KvLimits {
    max_key_bytes: usize::MAX,
    max_depth: usize::MAX,
    ..KvLimits::server()
};

/// Refuse `key` if it breaks the path rules; `allow_root` for commands that take the root ("").
pub fn check_key(key: &str, allow_root: bool) -> Result<(), ClientError> {
    shoal_kv::validate_key(key.as_bytes(), &SYNTAX_ONLY, allow_root).map_err(|e| {
        ClientError::BadRequest {
            message: format!("key `{key}`: {e}"),
        }
    })
}

/// Check every key `command` names.
pub fn check_keys(command: &Command) -> Result<(), ClientError> {
    let (keys, allow_root): (Vec<&String>, bool) = match command {
        Command::Kv(
            KvCommand::Put { key, .. }
            | KvCommand::Del { key, .. }
            | KvCommand::Cas { key, .. }
            | KvCommand::PutTemp { key, .. }
            | KvCommand::Ttl { key, .. },
        )
        | Command::Lock { key: Some(key), .. }
        | Command::Lock {
            action:
                Some(lease::LockAction::Acquire { key, .. } | lease::LockAction::Release { key, .. }),
            ..
        } => (vec![key], false),
        Command::Elect { name, .. } => (vec![name], false),
        Command::Kv(KvCommand::Mkdir { dir, .. } | KvCommand::MkdirTemp { dir, .. }) => {
            (vec![dir], false)
        }
        Command::Kv(KvCommand::Get { key, .. }) => (vec![key], true),
        Command::Kv(KvCommand::List { dir, .. }) => (vec![dir], true),
        Command::Watch { keys, .. } => (keys.iter().collect(), true),
        _ => (Vec::new(), true),
    };
    keys.into_iter().try_for_each(|k| check_key(k, allow_root))
}

/// Leave on a command line clap refused: as JSON when `-o json` was asked for (a script reads
/// stdout), else clap's own message; exit 2 either way. Help and version print as usual.
pub fn usage_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shown || !json_requested(std::env::args().skip(1)) {
        e.exit();
    }
    let error = ClientError::BadRequest {
        message: e.to_string().trim().to_string(),
    };
    println!("{}", super::answer::error_json(&error));
    std::process::exit(error.exit_code());
}

/// Whether the arguments ask for JSON output, read without clap (which just refused them).
fn json_requested(args: impl Iterator<Item = String>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        if arg == "--" {
            return false;
        }
        let value = match arg.as_str() {
            "-o" | "--output" => {
                previous_was_flag = true;
                continue;
            }
            a if previous_was_flag => a,
            a => a
                .strip_prefix("--output=")
                .or_else(|| a.strip_prefix("-o="))
                .or_else(|| a.strip_prefix("-o"))
                .unwrap_or(""),
        };
        previous_was_flag = false;
        if value == "json" {
            return true;
        }
    }
    false
}

/// `member list` for people: a header, then one aligned row per member (`-` for what the
/// contacted node does not know).
pub fn member_table(members: &[shoal_client::MemberInfo]) -> String {
    let mut rows = vec![["ID", "ROLE", "RAFT ADDRESS", "CLIENT ADDRESS", "MATCH"]
        .map(String::from)
        .to_vec()];
    rows.extend(members.iter().map(|m| {
        vec![
            m.id.to_string(),
            m.role.clone(),
            or_dash(&m.raft_addr),
            or_dash(&m.client_addr),
            m.match_index.map_or("-".into(), |i| i.to_string()),
        ]
    }));
    table(&rows)
}

/// `s`, or `-` for what is not known.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// Rows (the first a header) as aligned columns two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
