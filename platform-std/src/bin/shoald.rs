//! `shoald`: the Shoal server. See `shoald --help` and the README's "Running shoald".

#[cfg(unix)]
fn main() {
    use clap::Parser;
    use shoal_std::server::{logging, Flags, ServerConfig};
    shoal_cli_docs::answer_and_exit::<Flags>();
    let flags = Flags::parse();
    let cfg = match ServerConfig::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoald: {e}");
            std::process::exit(2);
        }
    };
    logging::init(cfg.log_format, cfg.log_level);
    std::process::exit(shoal_std::server::run(cfg));
}

#[cfg(not(unix))]
fn main() {
    eprintln!("shoald runs on Unix-like systems only");
    std::process::exit(2);
}
