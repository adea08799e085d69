//! The logging shim: the same macro names as `shoal-core`'s, routed to `defmt` (feature
//! `defmt`) or to the `log` facade. Arguments must be integers, `bool` or `&str` so that both
//! backends accept them.
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::defmt::$level!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::log::$level!($($arg)*) };
}

macro_rules! debug { ($($arg:tt)*) => { shoal_log!(debug, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { shoal_log!(info, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { shoal_log!(warn, $($arg)*) }; }
macro_rules! error { ($($arg:tt)*) => { shoal_log!(error, $($arg)*) }; }
