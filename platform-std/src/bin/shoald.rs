//! `shoald`: the Shoal server. See `shoald --help` and the README's "Running shoald".

#[cfg(unix)]
fn main() {
    use clap::Parser;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let flags = shoal_std::server::Flags::parse();
    let cfg = match shoal_std::server::ServerConfig::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoald: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(shoal_std::server::run(cfg));
}

#[cfg(not(unix))]
fn main() {
    eprintln!("shoald runs on Unix-like systems only");
    std::process::exit(2);
}
