//! Building large structs where they will live.
//!
//! On a small board the node driver lives in a `static`, and the stack is a few KiB. A
//! constructor that returns the driver by value assembles it on the stack and moves it, and at
//! the optimisation levels used for flash size the compiler keeps several such copies in one
//! frame (over 100 KiB measured for an earlier, larger `Raft`). [`write_fields!`] instead writes
//! each field of a `MaybeUninit` slot in place, so only one field at a time is ever a
//! temporary, and a large field can itself be built in place by its own constructor.
//!
//! This module is the only place in the core that uses `unsafe`. The macro is sound because it
//! refuses to compile unless the field list names every field of the struct exactly once (a
//! struct literal with the same fields is type-checked in dead code), so the slot is fully
//! initialised before the `&mut` to it is created. A value built in a slot whose constructor
//! then fails is leaked (never dropped), which is safe.
#![allow(unsafe_code)]

use core::mem::MaybeUninit;

/// Initialise every field of `$slot: &mut MaybeUninit<$ty>` in place and return `&mut $ty`.
///
/// Each entry is either `field: value` (the value is written into the field) or
/// `field in init` where `init` is a function `FnOnce(&mut MaybeUninit<F>) -> Result<&mut F, E>`
/// that builds the field in place (it must return the slot it was given; this is checked). If
/// `init` fails, the enclosing function returns `Err(e.into())` at once and the fields written
/// so far are leaked. The list must be complete: a missing or repeated field is a compile error.
/// Entries are evaluated in the order given. A `field: value` expression is evaluated inside a
/// closure, so it cannot use `?` or `return`; compute such values before the macro.
///
/// Platforms use it to build their own structs that contain a [`crate::driver::Node`] in place
/// (see [`crate::driver::Node::init`]); the crate using it must `deny`, not `forbid`,
/// `unsafe_code`, since the expansion allows it locally.
///
/// ```
/// use core::mem::MaybeUninit;
/// struct Big { table: [u64; 512], count: usize }
/// fn init(slot: &mut MaybeUninit<Big>) -> Result<&mut Big, ()> {
///     Ok(shoal_core::write_fields!(slot, Big { table: [0; 512], count: 0 }))
/// }
/// let mut slot = MaybeUninit::uninit();
/// assert_eq!(init(&mut slot).unwrap().count, 0);
/// ```
///
/// Leaving a field out does not compile (nor does naming one twice):
///
/// ```compile_fail
/// use core::mem::MaybeUninit;
/// struct Big { table: [u64; 512], count: usize }
/// fn init(slot: &mut MaybeUninit<Big>) -> &mut Big {
///     shoal_core::write_fields!(slot, Big { table: [0; 512] })
/// }
/// ```
#[macro_export]
macro_rules! write_fields {
    ($slot:expr, $ty:ident { $($field:ident $op:tt $value:expr),* $(,)? }) => {{
        let slot: &mut ::core::mem::MaybeUninit<$ty> = $slot;
        let p: *mut $ty = slot.as_mut_ptr();
        $( $crate::write_fields!(@field p, $field $op $value); )*
        // Completeness check, never run: this literal compiles only if the list above names
        // every field of `$ty` exactly once.
        #[allow(unreachable_code, clippy::diverging_sub_expression)]
        if false {
            let _: $ty = $ty { $($field: loop {}),* };
        }
        // SAFETY: every field was written above (checked at compile time just above).
        #[allow(unsafe_code)]
        unsafe { slot.assume_init_mut() }
    }};
    (@field $p:ident, $field:ident : $value:expr) => {{
        // SAFETY: `$p` points to a live, writable `MaybeUninit`; `&raw mut` makes no reference
        // to the uninitialised field, and `write` does not drop the old bytes.
        // The value is made by a closure so that the caller's expression is not inside the
        // `unsafe` block (and may be built straight into the field).
        #[allow(unsafe_code)]
        let at = unsafe { &raw mut (*$p).$field };
        let make = || $value;
        // SAFETY: `at` is a field of the live slot being initialised.
        #[allow(unsafe_code)]
        unsafe { $crate::inplace::put(at, make) };
    }};
    (@field $p:ident, $field:ident in $init:expr) => {{
        // SAFETY: as above; a `MaybeUninit<F>` has the layout of `F`, and the field is not
        // otherwise borrowed while `init` runs.
        #[allow(unsafe_code)]
        let field = unsafe { &mut *(&raw mut (*$p).$field).cast::<::core::mem::MaybeUninit<_>>() };
        let at = field.as_ptr();
        let built = match ($init)(field) {
            ::core::result::Result::Ok(built) => built,
            ::core::result::Result::Err(e) => return ::core::result::Result::Err(e.into()),
        };
        assert!(::core::ptr::eq(built, at), "in-place constructor returned another slot");
    }};
}

/// Write `make()` to `at` without dropping what was there (a field being initialised).
///
/// # Safety
/// `at` must be valid for writes and aligned: [`write_fields!`] passes a field of its slot.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn put<T>(at: *mut T, make: impl FnOnce() -> T) {
    // SAFETY: the caller's contract.
    unsafe { at.write(make()) }
}

/// Build a value with an in-place constructor in a local slot and return it by value (the
/// by-value constructors use this, so both paths run the same code).
pub(crate) fn build<T, E>(
    init: impl for<'a> FnOnce(&'a mut MaybeUninit<T>) -> Result<&'a mut T, E>,
) -> Result<T, E> {
    let mut slot = MaybeUninit::uninit();
    let at = slot.as_ptr();
    let built = init(&mut slot)?;
    assert!(
        core::ptr::eq(built, at),
        "in-place constructor returned another slot"
    );
    // SAFETY: the constructor returned `Ok` with a reference to this very slot, which it can
    // only have obtained by initialising it.
    Ok(unsafe { slot.assume_init() })
}
