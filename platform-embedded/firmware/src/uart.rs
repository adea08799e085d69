//! The CMSDK APB UART of the MPS2 boards as an `embedded-io` byte stream (polled, no
//! interrupts). Registers: DATA at +0, STATE at +4 (bit 0 TX full, bit 1 RX full), CTRL at +8
//! (bit 0 TX enable, bit 1 RX enable), BAUDDIV at +0x10.

use core::convert::Infallible;
use embedded_io::{ErrorType, Read, ReadReady, Write, WriteReady};

/// One UART at `base`. Copies refer to the same device (one half reads, the other writes).
#[derive(Clone, Copy)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enable transmit and receive of the UART at `base`.
    pub fn new(base: usize) -> Self {
        let u = Uart { base };
        u.reg_write(0x10, 16);
        u.reg_write(0x08, 0b11);
        u
    }

    fn reg_read(&self, off: usize) -> u32 {
        // SAFETY: a CMSDK UART register of this board.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn reg_write(&self, off: usize, v: u32) {
        // SAFETY: a CMSDK UART register of this board.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }
}

impl ErrorType for Uart {
    type Error = Infallible;
}

impl ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.reg_read(0x04) & 0b10 != 0)
    }
}

impl Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.reg_read(0x04) & 0b10 == 0 {}
        buf[0] = self.reg_read(0x00) as u8;
        Ok(1)
    }
}

impl WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.reg_read(0x04) & 0b01 == 0)
    }
}

impl Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.reg_read(0x04) & 0b01 != 0 {}
        self.reg_write(0x00, u32::from(buf[0]));
        Ok(1)
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
