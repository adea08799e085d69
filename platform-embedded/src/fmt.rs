//! The logging shim: the same macro names as `shoal-core`'s, routed through its
//! `shoal_log!` to `defmt` (feature `defmt`, which turns on `shoal-core`'s) or to the `log`
//! facade. Arguments must be integers, `bool` or `&str` so that both backends accept them.
#![allow(unused_macros)]

macro_rules! debug { ($($arg:tt)*) => { ::shoal_core::shoal_log!(debug, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { ::shoal_core::shoal_log!(info, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { ::shoal_core::shoal_log!(warn, $($arg)*) }; }
macro_rules! error { ($($arg:tt)*) => { ::shoal_core::shoal_log!(error, $($arg)*) }; }
