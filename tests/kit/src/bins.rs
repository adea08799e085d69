//! The workspace's binaries, as built for the running test.
//!
//! Cargo puts a test executable in `target/<profile>/deps/` and every binary of the workspace in
//! `target/<profile>/`, so a test of one package finds another package's binary there when both
//! were built with the same profile (`cargo suite` builds them all). A missing binary fails the
//! test and names the command that builds it: a process test that passed without running would
//! hide exactly the breakage it exists to catch.

use std::path::{Path, PathBuf};

/// The directory that holds the workspace's binaries for this test's profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let dir = exe.parent().expect("an executable lives in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The path of the workspace binary `name` (`shoald`, `shoalctl`, `shoal-inspect`, ...).
///
/// # Panics
/// When it has not been built for this profile, with the cargo command that builds it.
pub fn bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return path;
    }
    panic!(
        "`{name}` is not built for this test: {} does not exist. Build it with `{}` (or run \
         `cargo suite`, which builds every binary of the workspace), then run the test again.",
        path.display(),
        build_command(&dir, name)
    );
}

/// The cargo command that puts binary `name` into `dir`.
fn build_command(dir: &Path, name: &str) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => format!("cargo build --release --bin {name}"),
        Some("debug") | None => format!("cargo build --bin {name}"),
        Some(profile) => format!("cargo build --profile {profile} --bin {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_the_command_that_builds_it() {
        let err = std::panic::catch_unwind(|| bin("no-such-shoal-binary")).unwrap_err();
        let msg = err
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(msg.contains("`no-such-shoal-binary` is not built"), "{msg}");
        assert!(msg.contains("--bin no-such-shoal-binary"), "{msg}");
        assert!(msg.contains("cargo suite"), "{msg}");
    }

    #[test]
    fn the_build_command_follows_the_profile() {
        let cmd = |d: &str| build_command(Path::new(d), "shoald");
        assert_eq!(cmd("target/release"), "cargo build --release --bin shoald");
        assert_eq!(cmd("target/debug"), "cargo build --bin shoald");
        assert_eq!(
            cmd("target/dist"),
            "cargo build --profile dist --bin shoald"
        );
    }
}
