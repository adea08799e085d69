//! The logging shim: one set of macros that route to `defmt` (feature `defmt`, for embedded
//! targets) or to the `log` facade (everywhere else). Core code writes `trace!`, `debug!`,
//! `info!`, `warn!` and `error!` once; neither backend is needed to build the crate.
//!
//! Arguments must be formattable by both backends: integers, `bool` and `&str`.
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::defmt::$level!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::log::$level!($($arg)*) };
}

macro_rules! trace { ($($arg:tt)*) => { shoal_log!(trace, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { shoal_log!(debug, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { shoal_log!(info, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { shoal_log!(warn, $($arg)*) }; }
macro_rules! error { ($($arg:tt)*) => { shoal_log!(error, $($arg)*) }; }
