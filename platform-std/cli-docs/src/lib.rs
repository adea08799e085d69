//! # shoal-cli-docs
//!
//! Shell completions and man pages made from a binary's CLI definition, for the packages:
//! `BIN --generate bash|zsh|fish|man` prints one to standard output and exits. The flag is
//! read before the CLI is parsed (so a binary whose subcommand is required still answers it)
//! and left out of `--help`: it is for packagers, not for daily use.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

/// What `--generate` asks for, if it is the first argument.
pub fn requested() -> Option<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--generate"), Some(what)) => Some(what),
        (Some("--generate"), None) => Some(String::new()),
        _ => None,
    }
}

/// Why `--generate` could not answer.
#[derive(Debug)]
pub enum GenerateError {
    /// It asked for something that is neither a shell nor `man`.
    Unknown(String),
    /// Writing the answer failed.
    Io(std::io::Error),
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenerateError::Unknown(what) => write!(
                f,
                "--generate takes bash, zsh, fish, elvish, powershell or man, not `{what}`"
            ),
            GenerateError::Io(e) => write!(f, "writing the answer: {e}"),
        }
    }
}

/// Write what `what` names for the CLI `C` to `out`: a completion script for a shell, or the
/// man page (`man`).
pub fn generate<C: CommandFactory>(what: &str, out: &mut dyn Write) -> Result<(), GenerateError> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    if what == "man" {
        return clap_mangen::Man::new(cmd)
            .render(out)
            .map_err(GenerateError::Io);
    }
    let shell: Shell = what
        .parse()
        .map_err(|_| GenerateError::Unknown(what.to_string()))?;
    // Made in memory, then written: the generator itself panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script).map_err(GenerateError::Io)
}

/// In `main`, before parsing: answer `--generate` for the CLI `C` and exit (0, or 2 with the
/// reason); return if it was not asked for.
pub fn answer_and_exit<C: CommandFactory>() {
    let Some(what) = requested() else { return };
    let mut out = std::io::stdout().lock();
    let done = generate::<C>(&what, &mut out).and_then(|()| out.flush().map_err(GenerateError::Io));
    match done {
        Ok(()) => std::process::exit(0),
        // A reader that went away (`| head`): end quietly, as a writer ended by SIGPIPE.
        Err(GenerateError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(141)
        }
        Err(e) => {
            eprintln!("{}: {e}", C::command().get_name());
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(name = "demo")]
    struct Demo {
        /// The thing to do.
        #[arg(long)]
        thing: Option<String>,
    }

    #[test]
    fn completions_and_man_pages_name_the_flags() {
        for (shell, flag) in [
            ("bash", "--thing"),
            ("zsh", "--thing"),
            ("fish", "-l thing"),
        ] {
            let mut out = Vec::new();
            generate::<Demo>(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(flag), "{shell}: {text}");
        }
        let mut man = Vec::new();
        generate::<Demo>("man", &mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.contains(".TH demo") && man.contains("The thing to do"),
            "{man}"
        );
        let e = generate::<Demo>("tcsh", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("not `tcsh`"), "{e}");
    }
}
