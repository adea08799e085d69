//! shoald's log lines: text for people or one JSON object per line for log collectors, at
//! `--log-level` unless `RUST_LOG` says otherwise.

use std::io::Write;

use super::config::LogFormat;

/// Start logging to standard error as configured. `RUST_LOG`, when set, wins over `level` (and
/// may set levels per module).
pub fn init(format: LogFormat, level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    match format {
        LogFormat::Text => {
            b.format_timestamp_millis();
        }
        LogFormat::Json => {
            b.format(|buf, r| {
                let line = json_line(&buf.timestamp_millis().to_string(), r);
                writeln!(buf, "{line}")
            });
        }
    }
    // A second start in one process (tests) keeps the first logger.
    let _ = b.try_init();
}

/// One record as a JSON object: `ts` (RFC 3339, UTC), `level`, `target`, `msg`.
fn json_line(ts: &str, r: &log::Record<'_>) -> String {
    serde_json::json!({
        "ts": ts,
        "level": r.level().as_str(),
        "target": r.target(),
        "msg": r.args().to_string(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_its_message_escaped() {
        let args = format_args!("group {} said \"hi\"\nand more", 3);
        let r = log::Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("shoal_std::server::net")
            .build();
        let line = json_line("2026-12-04T10:00:00.000Z", &r);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "shoal_std::server::net");
        assert_eq!(v["msg"], "group 3 said \"hi\"\nand more");
        assert_eq!(v["ts"], "2026-12-04T10:00:00.000Z");
    }
}
