//! The boot counter: a number that grows by one at every boot and survives resets and power
//! cuts, kept in two erase sectors of NOR flash of its own. A board without a hardware RNG
//! makes its sealed-link nonces from it (`shoal_seal::CounterNonces`), so it must never go
//! back: [`advance`] makes the new count durable before returning it, and a power cut at any
//! step leaves the last returned count (or the new one) readable, never a smaller one.
//!
//! Each count is a record of two words, the count and its complement (a torn write, which NOR
//! leaves with some bits still set, never passes that check); records fill a sector in order.
//! When the sector holding the highest count is full, the *other* sector is erased and the next
//! count starts it, so the highest count is never in a sector being erased.

use embedded_storage::nor_flash::NorFlash;

/// Bytes of one record: the count and its complement, padded to the part's write size.
const fn record_bytes(write: usize) -> usize {
    if write >= 8 {
        write
    } else {
        8
    }
}

/// What a sector holds: its highest valid count and the first record slot never written.
struct Scan {
    highest: u32,
    free_slot: Option<u32>,
}

fn scan<F: NorFlash>(flash: &mut F, base: u32) -> Result<Scan, F::Error> {
    let stride = record_bytes(F::WRITE_SIZE) as u32;
    let slots = F::ERASE_SIZE as u32 / stride;
    let mut out = Scan {
        highest: 0,
        free_slot: None,
    };
    for slot in 0..slots {
        let mut rec = [0u8; 8];
        flash.read(base + slot * stride, &mut rec)?;
        if rec == [0xFF; 8] {
            out.free_slot = Some(slot);
            break;
        }
        let count = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let check = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
        if check == !count && count != 0 && count != u32::MAX {
            out.highest = out.highest.max(count);
        }
    }
    Ok(out)
}

/// The count the last [`advance`] returned (0 if none), without changing anything.
pub fn current<F: NorFlash>(flash: &mut F, offset: u32) -> Result<u32, F::Error> {
    let a = scan(flash, offset)?;
    let b = scan(flash, offset + F::ERASE_SIZE as u32)?;
    Ok(a.highest.max(b.highest))
}

/// Advance the counter kept in the two sectors at `offset` and return the new count, durable
/// before this returns (on a part whose writes are durable when they return, as NOR's are).
/// The first count of erased sectors is 1.
pub fn advance<F: NorFlash>(flash: &mut F, offset: u32) -> Result<u32, F::Error> {
    let sectors = [offset, offset + F::ERASE_SIZE as u32];
    let scans = [scan(flash, sectors[0])?, scan(flash, sectors[1])?];
    // The sector holding the highest count is the active one.
    let active = usize::from(scans[1].highest > scans[0].highest);
    let next = scans[active].highest.saturating_add(1).min(u32::MAX - 1);
    let (base, slot) = match scans[active].free_slot {
        Some(slot) => (sectors[active], slot),
        None => {
            let other = sectors[1 - active];
            flash.erase(other, other + F::ERASE_SIZE as u32)?;
            (other, 0)
        }
    };
    let mut rec = [0xFFu8; 64];
    let len = record_bytes(F::WRITE_SIZE);
    rec[..4].copy_from_slice(&next.to_le_bytes());
    rec[4..8].copy_from_slice(&(!next).to_le_bytes());
    flash.write(base + slot * len as u32, &rec[..len])?;
    Ok(next)
}

/// Erase both sectors (a first boot; the counter starts again at 1, so a key used with the old
/// counts must not be used again: docs/SECURITY.md).
pub fn format<F: NorFlash>(flash: &mut F, offset: u32) -> Result<(), F::Error> {
    flash.erase(offset, offset + 2 * F::ERASE_SIZE as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::ram::RamFlash;

    #[test]
    fn counts_grow_across_sector_turnovers_and_reopens() {
        let mut mem = [0xFFu8; 2 * 64];
        let mut last = 0;
        // 64-byte sectors of 8-byte records: 8 per sector, so this turns over many times.
        for _ in 0..50 {
            let mut flash = RamFlash::<64, 4>::new(&mut mem);
            let n = advance(&mut flash, 0).unwrap();
            assert_eq!(n, last + 1);
            assert_eq!(current(&mut flash, 0).unwrap(), n);
            last = n;
        }
    }

    /// Two 64-byte sectors over `mem`, the count advanced `times` times.
    fn advanced(mem: &mut [u8], times: u32) -> RamFlash<'_, 64, 4> {
        let mut flash = RamFlash::new(mem);
        for _ in 0..times {
            advance(&mut flash, 0).unwrap();
        }
        flash
    }

    #[test]
    fn a_torn_record_never_lowers_the_count() {
        let mut mem = [0xFFu8; 2 * 64];
        let mut flash = advanced(&mut mem, 5);
        // A power cut while writing count 6: the count word written, its complement not.
        let mut torn = [0xFFu8; 8];
        torn[..4].copy_from_slice(&6u32.to_le_bytes());
        flash.write(5 * 8, &torn).unwrap();
        assert_eq!(current(&mut flash, 0).unwrap(), 5);
        assert_eq!(advance(&mut flash, 0).unwrap(), 6);
        assert_eq!(current(&mut flash, 0).unwrap(), 6);
    }

    #[test]
    fn a_cut_during_the_other_sectors_erase_keeps_the_count() {
        let mut mem = [0xFFu8; 2 * 64];
        let mut flash = advanced(&mut mem, 8);
        // Sector 0 is full (counts 1..8); the next advance erases sector 1 first. Whatever
        // sector 1 holds when the cut comes (here: garbage), the count stays 8.
        flash.write(64, &[0x00; 8]).unwrap();
        assert_eq!(current(&mut flash, 0).unwrap(), 8);
        assert_eq!(advance(&mut flash, 0).unwrap(), 9);
        assert_eq!(advance(&mut flash, 0).unwrap(), 10);
    }
}
