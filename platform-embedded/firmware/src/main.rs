//! Shoal firmware for QEMU's `mps2-an386` board (Cortex-M4F): one voting node of a three-node
//! cluster with DtKV, on one core, without an allocator.
//!
//! - Peers: CMSDK UART0 and UART1 (the two other boards, in ascending node-id order), COBS
//!   framed ([`shoal_embedded::link`]), opened by the `Hello` handshake.
//! - Storage: [`FlashStorage`] over [`RamFlash`] in spare SSRAM at [`FLASH_PARTITION`], which
//!   QEMU keeps across a system reset (the ELF is reloaded; this region is in no ELF segment).
//!   A marker tells a first boot (format) from a reset (recover from "flash").
//! - Clock: SysTick, 1 ms.
//! - Node id: a word the script places at [`NODE_ID_ADDR`] with `-device loader`.
//! - Output: semihosting; `STATUS`, `DIGEST` and `FATAL` lines are read by
//!   `platform-embedded/qemu/cluster.sh`.
//!
//! The leader proposes `put k{n} = v{n}` on a timer until [`TARGET_KEYS`] keys exist.
//!
//! The firmware only exists for `target_os = "none"` (build it from `platform-embedded/firmware`,
//! whose `.cargo/config.toml` selects `thumbv7em-none-eabihf`). On a host, where a workspace
//! build (`cargo build/clippy --workspace`) also compiles it, it is an empty program that says
//! so.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod board;
#[cfg(target_os = "none")]
mod uart;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "shoal-firmware runs on thumbv7em-none-eabihf (QEMU mps2-an386): build it from \
         platform-embedded/firmware and run platform-embedded/qemu/cluster.sh"
    );
    std::process::exit(2);
}
