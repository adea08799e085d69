//! `shoalctl watch`: changes to keys or directories as they commit, one line or JSON object per
//! event, until interrupted, `--count` events, or stdout closes.

use std::io::Write;

use serde_json::json;
use shoal_client::{Client, WatchItem};

use super::answer::{print_error, text, value_json};
use super::Output;

/// Print the events under `keys` from `from_index` (0: from now); returns the exit code.
pub async fn run(
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
