//! DtKV (in progress).
#![no_std]
