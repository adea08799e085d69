//! The board side of the firmware: everything that runs on the Cortex-M4F (see the crate docs).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use shoal_core::driver::{Event, NodeConfig};
use shoal_core::limits::Config;
use shoal_core::membership::Membership;
use shoal_core::types::Role;
use shoal_embedded::clock::TickClock;
use shoal_embedded::flash::boot;
use shoal_embedded::flash::ram::RamFlash;
use shoal_embedded::flash::{FlashStorage, Layout};
use shoal_embedded::link::{FrameRx, FrameTx, Framing};
use shoal_embedded::runtime::{Mesh, Runtime};
use shoal_kv::{Command, DtKv, EmbeddedKvBuffers, KvLimits, KvSlices, Op};
use shoal_seal::{ClusterKey, CounterNonces, Order, KEY_BYTES};

use crate::uart::Uart;

/// Where the stand-in flash partition starts (SSRAM 2/3, 2 MiB above the RAM budget region).
const FLASH_PARTITION: usize = 0x2020_0000;
/// Sector size of the stand-in flash.
const SECTOR_BYTES: usize = 4096;
/// Sectors in the Shoal partition (2 hard state + 2 × 4 snapshot + 54 ring).
const PARTITION_SECTORS: u32 = 64;
/// Sectors in front of the partition: the "formatted" marker, then the two sectors of the boot
/// counter (`shoal_embedded::flash::boot`), from which sealed-link nonces are made.
const FRONT_SECTORS: usize = 3;
/// The whole stand-in flash region.
const REGION_BYTES: usize = SECTOR_BYTES * (PARTITION_SECTORS as usize + FRONT_SECTORS);
/// The marker written after a format.
const MARKER: &[u8; 8] = b"SHOALFL1";
/// Where the script's `-device loader` puts this board's node id.
const NODE_ID_ADDR: usize = 0x203F_F000;
/// Where the script's `-device loader` puts the 32-byte cluster key (all bytes equal, as
/// unloaded RAM reads: no key, links in plaintext). A real board keeps it in a flash page of
/// its own, written when the board is provisioned.
const KEY_ADDR: usize = 0x203F_E000;
/// The cluster's id.
const CLUSTER_ID: u64 = 0x5348_4f41;
/// Keys the leader writes.
const TARGET_KEYS: u32 = 40;
/// Time between the leader's writes.
const PROPOSE_EVERY_MS: u64 = 150;
/// Send ring per link.
const TX_BYTES: usize = 1536;
/// Receive buffer per link: the largest append of [`RAFT`] (512 B of payload, 16 entry
/// headers, frame header and message) with room to spare.
const RX_BYTES: usize = 1280;
/// The driver's frame buffer: [`FRAME_PREFIX_RESERVE`](shoal_core::wire::FRAME_PREFIX_RESERVE)
/// in front of up to 512 B of entries.
const FRAME_BYTES: usize = 1536;
/// `Config::embedded()` with messages of at most 512 B of payload, so that frames fit the
/// link buffers above.
const RAFT: Config = Config {
    max_bytes_per_message: 512,
    snapshot_chunk_bytes: 512,
    ..Config::embedded()
};
/// The stack paint pattern.
const PAINT: u32 = 0x5AA5_F00D;

static TICKS_MS: AtomicU32 = AtomicU32::new(0);

/// A static the main loop borrows exactly once.
struct Once<T>(UnsafeCell<T>);
// SAFETY: one core, and `take` is called once per static before interrupts touch nothing else.
unsafe impl<T> Sync for Once<T> {}
impl<T> Once<T> {
    /// # Safety
    /// Call at most once per static.
    #[allow(clippy::mut_from_ref)]
    unsafe fn take(&self) -> &mut T {
        &mut *self.0.get()
    }
}

/// DtKV at the embedded default limits.
const KV_LIMITS: KvLimits = KvLimits::embedded();

/// DtKV's memory, sized from [`KV_LIMITS`]. All zero, so it lives in `.bss` and adds nothing
/// to the flash image.
static KV_MEMORY: Once<EmbeddedKvBuffers> = Once(UnsafeCell::new(EmbeddedKvBuffers::new()));
static FRAME_BUF: Once<[u8; FRAME_BYTES]> = Once(UnsafeCell::new([0; FRAME_BYTES]));
/// The whole runtime (driver with Raft and DtKV handle, storage, links), built in place by
/// [`Runtime::init`] so that it never sits on `main`'s stack.
static RUNTIME: Once<MaybeUninit<Rt<'static>>> = Once(UnsafeCell::new(MaybeUninit::uninit()));
/// The flash storage, opened in place by [`open_store`]; the driver borrows it.
static STORE: Once<MaybeUninit<Store<'static>>> = Once(UnsafeCell::new(MaybeUninit::uninit()));
/// The sending halves of the links (with their rings); the driver borrows them.
static MESH: Once<MaybeUninit<Links>> = Once(UnsafeCell::new(MaybeUninit::uninit()));
/// The receiving halves of the links (with their frame buffers); the runtime borrows them.
static RX: Once<MaybeUninit<RxLinks>> = Once(UnsafeCell::new(MaybeUninit::uninit()));

#[exception]
fn SysTick() {
    // The only writer: a load and a store are enough (no read-modify-write atomics needed).
    TICKS_MS.store(
        TICKS_MS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

extern "C" {
    static mut __ebss: u32;
}

/// Fill the unused stack below the current frame with [`PAINT`].
fn paint_stack() {
    let bottom = core::ptr::addr_of_mut!(__ebss) as usize;
    let here = cortex_m::register::msp::read() as usize - 256;
    let mut p = (bottom + 3) & !3;
    while p < here {
        // SAFETY: between the end of .bss and below the live stack: unused RAM.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used: from the top of RAM down to the lowest overwritten paint word.
fn stack_high_water() -> usize {
    extern "C" {
        static _stack_start: u32;
    }
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = (core::ptr::addr_of!(__ebss) as usize + 3) & !3;
    // SAFETY: reads of RAM between .bss and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

#[entry]
fn main() -> ! {
    paint_stack();
    let mut cp = cortex_m::Peripherals::take().expect("first and only take");
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(25_000 - 1); // 25 MHz core clock: 1 ms
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();

    // SAFETY: the loader wrote this word; it is plain RAM.
    let node_id = unsafe { core::ptr::read_volatile(NODE_ID_ADDR as *const u32) } as u64;
    if !(1..=3).contains(&node_id) {
        hprintln!(
            "FATAL node id {} at {:#x} (use -device loader)",
            node_id,
            NODE_ID_ADDR
        );
        debug::exit(debug::EXIT_FAILURE);
    }
    let rt = start(node_id);
    let mut clock = TickClock::new(TICKS_MS.load(Ordering::Relaxed));

    // The core's constructors build the driver on the stack (transiently) before it lands in
    // `RUNTIME`: keep that peak, then paint again to measure the main loop on its own.
    let init_stack = stack_high_water();
    paint_stack();

    let mut pending: Option<(u64, u64, u64)> = None; // (index, term, proposed at)
    let mut next_propose_ms = 0u64;
    let mut next_status_ms = 0u64;
    loop {
        let now = clock.update(TICKS_MS.load(Ordering::Relaxed));
        let mut done_index = None;
        let result = rt.poll(now, &mut |ev| match ev {
            Event::Applied { index, term, .. } => done_index = Some((index, term)),
            Event::RoleChanged { role, term, leader } => {
                hprintln!(
                    "ROLE node={} role={} term={} leader={}",
                    node_id,
                    role.name(),
                    term,
                    leader
                );
            }
            Event::Snapshot { index } => hprintln!("SNAPSHOT node={} index={}", node_id, index),
            _ => {}
        });
        if let Err(e) = result {
            hprintln!("FATAL node {}: {}", node_id, e);
            debug::exit(debug::EXIT_FAILURE);
        }
        if let (Some((i, _)), Some((pi, _, _))) = (done_index, pending) {
            if i >= pi {
                pending = None;
            }
        }
        let is_leader = rt.node().raft().role() == Role::Leader;
        if pending.is_some_and(|(_, _, at)| now - at > 3000) || !is_leader {
            pending = None;
        }
        if is_leader && pending.is_none() && now >= next_propose_ms {
            next_propose_ms = now + PROPOSE_EVERY_MS;
            if let Some(n) = first_missing_key(rt.node().state_machine()) {
                let mut key = heapless::String::<16>::new();
                let mut value = heapless::String::<16>::new();
                let _ = core::fmt::write(&mut key, format_args!("k{}", n));
                let _ = core::fmt::write(&mut value, format_args!("v{}", n));
                let cmd = Command {
                    client_id: 0,
                    seq: 0,
                    time_ms: now,
                    op: Op::Put {
                        key: key.as_bytes(),
                        value: value.as_bytes(),
                    },
                };
                let mut buf = [0u8; 64];
                if let Ok(len) = cmd.encode(&mut buf) {
                    if let Ok((index, term)) = rt.node_mut().propose(now, &buf[..len]) {
                        pending = Some((index, term, now));
                    }
                }
            }
        }
        if now >= next_status_ms {
            next_status_ms = now + 1000;
            let links = [node_link(rt, 0), node_link(rt, 1)];
            let stats = rt.stats();
            let node = rt.node();
            let kv = node.state_machine();
            let raft = node.raft();
            hprintln!(
                "STATUS node={} role={} term={} leader={} commit={} applied={} keys={} links={}{} sealed={} seal_refused={} key_fail={} stack={} loop_stack={}",
                node_id,
                raft.role().name(),
                raft.term(),
                raft.leader(),
                raft.commit(),
                node.applied(),
                count_keys(kv),
                links[0],
                links[1],
                stats.sealed_sessions,
                stats.seal_refusals,
                stats.key_mismatches,
                init_stack.max(stack_high_water()),
                stack_high_water()
            );
            if first_missing_key(kv).is_none() {
                hprintln!(
                    "DIGEST node={} applied={} digest={:#018x}",
                    node_id,
                    node.applied(),
                    kv.digest()
                );
            }
        }
        cortex_m::asm::nop();
    }
}

/// Set up storage, links and DtKV and build the runtime in [`RUNTIME`]. Not inlined, and each
/// large part is built by its own non-inlined function straight into its `static`, so that no
/// copy of any of them is on the stack when the main loop starts, and the start-up peak is one
/// part's construction at a time.
#[inline(never)]
fn start(node_id: u64) -> &'static mut Rt<'static> {
    let peers: [u64; 2] = match node_id {
        1 => [2, 3],
        2 => [1, 3],
        _ => [1, 2],
    };
    let (store, boot) = open_store(node_id);
    let (mesh, rx) = open_links(peers);
    // SAFETY: the loader wrote these bytes (or left them zero); plain RAM, read once.
    let key = unsafe { core::ptr::read_volatile(KEY_ADDR as *const [u8; KEY_BYTES]) };
    match ClusterKey::checked(key) {
        Ok(key) => {
            let nonces = CounterNonces::new(u64::from(boot));
            mesh.seal_links(&key, CLUSTER_ID, node_id, nonces, Order::Datagram);
            hprintln!("SEAL node={} boot={} links=sealed", node_id, boot);
        }
        Err(_) => hprintln!("SEAL node={} boot={} links=plaintext", node_id, boot),
    }

    // SAFETY: each static is taken once, here.
    let kv_mem = unsafe { KV_MEMORY.take() };
    let frame_buf = unsafe { FRAME_BUF.take() };
    let kv = DtKv::new(kv_mem.slices(), KV_LIMITS).expect("buffers sized for the limits");
    let cfg = NodeConfig {
        cluster_id: CLUSTER_ID,
        group: 0,
        node_id,
        raft: RAFT,
        seed: 0x9E37_79B9 ^ node_id,
    };
    let members = Membership::new(&[1, 2, 3], &[]).expect("three voters");
    // SAFETY: taken once, here. The runtime is built in this static, not on the stack.
    let slot = unsafe { RUNTIME.take() };
    match Runtime::init(
        slot,
        cfg,
        store,
        kv,
        &mut frame_buf[..],
        mesh,
        rx,
        0,
        Some(&members),
    ) {
        Ok(rt) => rt,
        Err(e) => fatal(node_id, "start", e),
    }
}

/// Open (or, on a first boot, format) the flash partition into [`STORE`], and advance the boot
/// counter (durably, before any sealed-link nonce of this boot exists); returns the store and
/// this boot's count.
#[inline(never)]
fn open_store(node_id: u64) -> (&'static mut Store<'static>, u32) {
    // SAFETY: spare SSRAM that nothing else uses; taken once.
    let region =
        unsafe { core::slice::from_raw_parts_mut(FLASH_PARTITION as *mut u8, REGION_BYTES) };
    let (marker, rest) = region.split_at_mut(SECTOR_BYTES);
    let (boot_sectors, part) = rest.split_at_mut(2 * SECTOR_BYTES);
    let formatted = &marker[..8] == MARKER;
    let mut boot_flash = RamFlash::<SECTOR_BYTES, 4>::new(boot_sectors);
    if !formatted {
        if let Err(e) = boot::format(&mut boot_flash, 0) {
            fatal(node_id, "boot counter", format_args!("{:?}", e));
        }
    }
    let boot = match boot::advance(&mut boot_flash, 0) {
        Ok(n) => n,
        Err(e) => fatal(node_id, "boot counter", format_args!("{:?}", e)),
    };
    let flash = RamFlash::<SECTOR_BYTES, 4>::new(part);
    let layout = Layout::new(0, PARTITION_SECTORS, 4);
    let opened = if formatted {
        Store::open(flash, layout)
    } else {
        Store::format(flash, layout)
    };
    // SAFETY: taken once, here.
    let store = match opened {
        Ok(s) => unsafe { STORE.take() }.write(s),
        Err(e) => fatal(node_id, "flash", e),
    };
    if !formatted {
        marker[..8].copy_from_slice(MARKER);
    }
    {
        use shoal_core::storage::{LogView, Storage};
        hprintln!(
            "BOOT node={} {} last_index={} term={}",
            node_id,
            if formatted { "recovered" } else { "formatted" },
            store.last_index(),
            store.hard_state().term
        );
    }
    (store, boot)
}

/// The two UART links, in [`MESH`] and [`RX`].
#[inline(never)]
fn open_links(peers: [u64; 2]) -> (&'static mut Links, &'static mut RxLinks) {
    let uarts = [Uart::new(0x4000_4000), Uart::new(0x4000_5000)];
    // SAFETY: each static is taken once, here.
    let mesh = unsafe { MESH.take() }.write(Mesh::new(
        peers,
        [
            FrameTx::new(uarts[0], Framing::Cobs),
            FrameTx::new(uarts[1], Framing::Cobs),
        ],
    ));
    let rx = unsafe { RX.take() }.write([
        FrameRx::new(uarts[0], Framing::Cobs),
        FrameRx::new(uarts[1], Framing::Cobs),
    ]);
    (mesh, rx)
}

/// Report a start-up failure and stop the board.
fn fatal(node_id: u64, what: &str, e: impl core::fmt::Display) -> ! {
    hprintln!("FATAL node {} {}: {}", node_id, what, e);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

type Store<'a> = FlashStorage<RamFlash<'a, SECTOR_BYTES, 4>, 64>;
type Links = Mesh<Uart, 2, TX_BYTES>;
type RxLinks = [FrameRx<Uart, RX_BYTES>; 2];

type Rt<'a> = Runtime<'a, &'a mut Store<'a>, Uart, Uart, 2, TX_BYTES, RX_BYTES>;

/// `U` for an established link, `d` for one still dialing.
fn node_link(rt: &mut Rt<'_>, i: usize) -> char {
    if rt.link_established(i) {
        'U'
    } else {
        'd'
    }
}

/// The smallest `n` in 1..=TARGET_KEYS whose key `k{n}` does not exist yet.
fn first_missing_key(kv: &DtKv<KvSlices<'_>>) -> Option<u32> {
    (1..=TARGET_KEYS).find(|n| {
        let mut key = heapless::String::<16>::new();
        let _ = core::fmt::write(&mut key, format_args!("k{}", n));
        kv.get(key.as_bytes()).is_err()
    })
}

fn count_keys(kv: &DtKv<KvSlices<'_>>) -> u32 {
    TARGET_KEYS
        - (1..=TARGET_KEYS)
            .filter(|n| {
                let mut key = heapless::String::<16>::new();
                let _ = core::fmt::write(&mut key, format_args!("k{}", n));
                kv.get(key.as_bytes()).is_err()
            })
            .count() as u32
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => hprintln!("FATAL panic at {}:{}", l.file(), l.line()),
        None => hprintln!("FATAL panic"),
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
