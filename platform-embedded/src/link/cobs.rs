//! COBS (consistent overhead byte stuffing) for serial links. A wire frame is stuffed so that it
//! contains no `0x00`, then followed by one `0x00` delimiter. A receiver that lost bytes, or
//! started listening mid-frame, drops what it holds at the next `0x00` and is in step again; the
//! frame's own CRC-32C (checked by `shoal_core::wire::decode`) rejects anything damaged.
//!
//! Only serial links use this. TCP links carry plain wire frames, exactly as `shoald` does.
//!
//! This module never allocates: the encoder streams into a caller's sink, the decoder fills a
//! buffer the caller owns.

/// The frame delimiter on a serial link.
pub const DELIMITER: u8 = 0x00;

/// The most bytes COBS adds to a frame of `len` bytes, delimiter included.
pub const fn max_overhead(len: usize) -> usize {
    len / 254 + 2
}

/// Stuff `frame` and emit it, then the delimiter, byte by byte into `out`.
///
/// A leading delimiter is emitted first as well, so that a receiver holding garbage from a
/// broken earlier frame drops it before this one starts.
pub fn encode(frame: &[u8], mut out: impl FnMut(u8)) {
    out(DELIMITER);
    let mut i = 0;
    loop {
        // A block is up to 254 non-zero bytes, prefixed by its length + 1. Every block but a
        // full one (code 0xFF) and the last implies a zero after it.
        let start = i;
        while i < frame.len() && frame[i] != 0 && i - start < 254 {
            i += 1;
        }
        let n = i - start;
        out(n as u8 + 1);
        for &b in &frame[start..i] {
            out(b);
        }
        if i == frame.len() {
            break;
        }
        if n < 254 {
            i += 1; // the zero this block implies
        }
    }
    out(DELIMITER);
}

/// Why a stuffed frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CobsError {
    /// The frame is longer than the receive buffer.
    Overflow,
    /// The stuffing is inconsistent (a block ran past the delimiter).
    Malformed,
}

/// A streaming COBS decoder into a fixed buffer of `N` bytes.
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    /// Bytes of the frame being received.
    len: usize,
    /// Length of the last completed frame.
    done: usize,
    /// Data bytes left in the current block (0: the next byte is a block code).
    left: u8,
    /// Whether the block just read implies a zero (written once another block follows).
    zero_pending: bool,
    /// Set after an error: ignore bytes until the next delimiter.
    skipping: bool,
}

/// What one byte did to the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// More bytes are needed.
    Pending,
    /// A frame of this many bytes is complete in [`Decoder::frame`].
    Frame(usize),
    /// A frame was dropped; the decoder resynchronises at the next delimiter.
    Dropped(CobsError),
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder, waiting for the first frame.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; N],
            len: 0,
            done: 0,
            left: 0,
            zero_pending: false,
            skipping: false,
        }
    }

    /// The most recently completed frame (valid until the next byte is fed).
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.done]
    }

    /// [`Decoder::frame`], writable (a sealed frame is opened in place).
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.done]
    }

    fn start_frame(&mut self) {
        self.len = 0;
        self.left = 0;
        self.zero_pending = false;
        self.skipping = false;
    }

    fn push(&mut self, b: u8) -> Result<(), CobsError> {
        if self.len == N {
            return Err(CobsError::Overflow);
        }
        self.buf[self.len] = b;
        self.len += 1;
        Ok(())
    }

    /// Take one byte from the line.
    pub fn feed(&mut self, byte: u8) -> Feed {
        self.done = 0;
        if byte == DELIMITER {
            let (skipping, mid_block, len) = (self.skipping, self.left != 0, self.len);
            self.start_frame();
            return if skipping {
                Feed::Pending
            } else if mid_block {
                Feed::Dropped(CobsError::Malformed)
            } else if len > 0 {
                self.done = len;
                Feed::Frame(len)
            } else {
                Feed::Pending
            };
        }
        if self.skipping {
            return Feed::Pending;
        }
        let result = if self.left == 0 {
            let r = if self.zero_pending {
                self.push(0)
            } else {
                Ok(())
            };
            self.left = byte - 1;
            self.zero_pending = byte != 0xFF;
            r
        } else {
            self.left -= 1;
            self.push(byte)
        };
        match result {
            Ok(()) => Feed::Pending,
            Err(e) => {
                self.start_frame();
                self.skipping = true;
                Feed::Dropped(e)
            }
        }
    }

    /// Forget any partial frame: bytes are ignored until the next delimiter.
    pub fn clear(&mut self) {
        self.start_frame();
        self.skipping = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn stuffed(frame: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(frame, |b| v.push(b));
        v
    }

    fn decode_all<const N: usize>(d: &mut Decoder<N>, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in bytes {
            if let Feed::Frame(_) = d.feed(b) {
                out.push(d.frame().to_vec());
            }
        }
        out
    }

    #[test]
    fn round_trips_every_shape() {
        let mut cases: Vec<Vec<u8>> = std::vec![
            std::vec![1],
            std::vec![0],
            std::vec![0, 0],
            std::vec![1, 0, 2, 0],
            (1..=254u8).collect(),
            (0..=255u8).collect(),
            std::vec![7; 600],
        ];
        let mut x = 12345u32;
        for n in 1..300 {
            cases.push(
                (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        if x >> 28 == 0 {
                            0
                        } else {
                            (x >> 16) as u8
                        }
                    })
                    .collect(),
            );
        }
        for case in cases {
            let s = stuffed(&case);
            assert!(s[1..s.len() - 1].iter().all(|&b| b != 0));
            assert!(s.len() <= case.len() + max_overhead(case.len()) + 1);
            let mut d = Decoder::<1024>::new();
            assert_eq!(
                decode_all(&mut d, &s),
                std::vec![case.clone()],
                "{:?}",
                case
            );
        }
    }

    #[test]
    fn resynchronises_after_garbage_and_loss() {
        let a = std::vec![1, 2, 0, 3];
        let b = std::vec![9; 40];
        let mut line = std::vec![0x55, 0x13, 0x77];
        let sa = stuffed(&a);
        line.extend_from_slice(&sa[..sa.len() - 3]); // frame a loses its end
        line.extend_from_slice(&stuffed(&b));
        line.extend_from_slice(&stuffed(&a));
        let mut d = Decoder::<64>::new();
        let got = decode_all(&mut d, &line);
        // The garbage prefix and the torn frame may decode to junk frames, which the wire CRC
        // rejects; the two whole frames must come through intact, in order.
        assert_eq!(got[got.len() - 2..], [b, a]);
    }

    #[test]
    fn oversize_frames_are_dropped_and_the_next_one_survives() {
        let mut d = Decoder::<16>::new();
        let mut line = stuffed(&[5; 40]);
        line.extend_from_slice(&stuffed(&[6; 10]));
        assert_eq!(decode_all(&mut d, &line), std::vec![std::vec![6; 10]]);
    }
}
