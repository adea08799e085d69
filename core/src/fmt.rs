//! The logging shim: one set of macros that route to `defmt` (feature `defmt`, for embedded
//! targets) or to the `log` facade (everywhere else). Core code writes `trace!`, `debug!`,
//! `info!`, `warn!` and `error!` once; neither backend is needed to build the crate.
//!
//! Arguments must be formattable by both backends: integers, `bool` and `&str`.
//!
//! [`invariant!`] asserts a property of the core's own state where that state changes, in
//! every build (release too, and on the boards through `defmt`): a violation means the node's
//! view of its log or its group is inconsistent, and going on could break safety.
#![allow(unused_macros)]

/// Log at `$level` (`trace`, `debug`, `info`, `warn` or `error`) through the backend this
/// build uses: `defmt` with the `defmt` feature, else `log`. The platform crates route their
/// own log macros through it, so the backend is chosen in this one place; a crate calling it
/// needs the backend as a dependency of its own.
#[doc(hidden)]
#[macro_export]
#[cfg(feature = "defmt")]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::defmt::$level!($($arg)*) };
}

/// [`shoal_log!`] without the `defmt` feature: to the `log` facade.
#[doc(hidden)]
#[macro_export]
#[cfg(not(feature = "defmt"))]
macro_rules! shoal_log {
    ($level:ident, $($arg:tt)*) => { ::log::$level!($($arg)*) };
}

macro_rules! trace { ($($arg:tt)*) => { shoal_log!(trace, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { shoal_log!(debug, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { shoal_log!(info, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { shoal_log!(warn, $($arg)*) }; }
macro_rules! error { ($($arg:tt)*) => { shoal_log!(error, $($arg)*) }; }

/// Assert an invariant of the core's state, in every build. Use it where the state changes,
/// never on input from outside the process: that is checked and refused instead (see
/// [`crate::fault`]).
#[cfg(feature = "defmt")]
macro_rules! invariant {
    ($cond:expr, $($arg:tt)+) => { ::defmt::assert!($cond, $($arg)+) };
}

/// Assert an invariant of the core's state, in every build. Use it where the state changes,
/// never on input from outside the process: that is checked and refused instead (see
/// [`crate::fault`]).
#[cfg(not(feature = "defmt"))]
macro_rules! invariant {
    ($cond:expr, $($arg:tt)+) => { ::core::assert!($cond, $($arg)+) };
}
