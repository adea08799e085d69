//! Framed links over `embedded-io` byte streams, one per peer.
//!
//! A link carries exactly the core's wire frames (`shoal_core::wire`: length prefix, version,
//! header, message, tail, CRC-32C). Two framings put them on a byte stream:
//!
//! - [`Framing::Plain`]: frames back to back, as `shoald` writes them on TCP. The reader takes
//!   the 4-byte length, then the rest; a length that cannot fit the receive buffer is an error
//!   and the connection must be closed (a byte stream cannot skip a lost length).
//! - [`Framing::Cobs`]: each frame COBS-stuffed between `0x00` delimiters ([`cobs`]), for serial
//!   lines that lose or garble bytes. The receiver resynchronises at the next delimiter; the
//!   frame CRC rejects what was damaged.
//!
//! A link is split in halves so that the sending half can live inside the node driver (as part
//! of its [`shoal_core::io::Transport`]) while the receiving half hands complete frames to it:
//! [`FrameTx`] queues whole frames in a fixed ring of `TX` bytes and moves them to the device
//! only as fast as `WriteReady` allows (never blocks); [`FrameRx`] reads only what `ReadReady`
//! says is there and assembles frames in a fixed buffer of `RX` bytes.

pub mod cobs;

use embedded_io::{Read, ReadReady, Write, WriteReady};
use heapless::Deque;
use shoal_core::io::TransportError;
use shoal_core::record::RECORD_OVERHEAD;

/// How frames are put on the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Framing {
    /// Plain wire frames back to back (TCP; compatible with `shoald`).
    Plain,
    /// COBS-stuffed frames between `0x00` delimiters (UART).
    Cobs,
}

/// Why a link failed. Plain links must be closed and reopened after any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkError {
    /// The device reported an error.
    Io,
    /// The peer closed the stream.
    Closed,
    /// A plain frame's length does not fit the receive buffer (or is zero).
    FrameTooLarge {
        /// The frame's total length in bytes.
        len: u32,
    },
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::Io => f.write_str("link device error"),
            LinkError::Closed => f.write_str("peer closed the link"),
            LinkError::FrameTooLarge { len } => {
                write!(f, "frame of {} bytes does not fit the receive buffer", len)
            }
        }
    }
}

/// The sending half of a link: a ring of `TX` bytes in front of a writer.
pub struct FrameTx<W, const TX: usize> {
    io: W,
    framing: Framing,
    ring: Deque<u8, TX>,
    /// Frames refused because the ring was full.
    pub dropped_frames: u32,
}

impl<W: Write + WriteReady, const TX: usize> FrameTx<W, TX> {
    /// A sending half over `io`.
    pub const fn new(io: W, framing: Framing) -> Self {
        FrameTx {
            io,
            framing,
            ring: Deque::new(),
            dropped_frames: 0,
        }
    }

    /// The device, for statistics or to close it.
    pub fn io_mut(&mut self) -> &mut W {
        &mut self.io
    }

    /// Queue one whole frame, or refuse it with `Busy` (nothing queued) if the ring lacks room.
    pub fn queue(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        let need = match self.framing {
            Framing::Plain => frame.len(),
            Framing::Cobs => frame.len() + cobs::max_overhead(frame.len()) + 1,
        };
        if TX - self.ring.len() < need {
            self.dropped_frames += 1;
            return Err(TransportError::Busy);
        }
        let ring = &mut self.ring;
        match self.framing {
            Framing::Plain => frame.iter().for_each(|&b| {
                let _ = ring.push_back(b);
            }),
            Framing::Cobs => cobs::encode(frame, |b| {
                let _ = ring.push_back(b);
            }),
        }
        Ok(())
    }

    /// Bytes queued and not yet handed to the device.
    pub fn queued(&self) -> usize {
        self.ring.len()
    }

    /// Forget everything queued (the connection was replaced).
    pub fn clear(&mut self) {
        self.ring.clear();
    }

    /// Hand queued bytes to the device while it is ready; never waits.
    pub fn drain(&mut self) -> Result<(), LinkError> {
        while !self.ring.is_empty() {
            if !self.io.write_ready().map_err(|_| LinkError::Io)? {
                return Ok(());
            }
            let (front, _) = self.ring.as_slices();
            let n = self.io.write(front).map_err(|_| LinkError::Io)?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                self.ring.pop_front();
            }
        }
        Ok(())
    }
}

enum RxState<const RX: usize> {
    Plain { buf: [u8; RX], have: usize },
    Cobs(cobs::Decoder<RX>),
}

/// The receiving half of a link: frames assembled in a buffer of `RX` bytes.
pub struct FrameRx<R, const RX: usize> {
    io: R,
    state: RxState<RX>,
    /// Serial frames dropped by the COBS layer (garbage, overflow).
    pub dropped_frames: u32,
}

impl<R: Read + ReadReady, const RX: usize> FrameRx<R, RX> {
    /// A receiving half over `io`.
    pub fn new(io: R, framing: Framing) -> Self {
        FrameRx {
            io,
            state: match framing {
                Framing::Plain => RxState::Plain {
                    buf: [0; RX],
                    have: 0,
                },
                Framing::Cobs => RxState::Cobs(cobs::Decoder::new()),
            },
            dropped_frames: 0,
        }
    }

    /// The device.
    pub fn io_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Forget a partial frame (the connection was replaced).
    pub fn clear(&mut self) {
        match &mut self.state {
            RxState::Plain { have, .. } => *have = 0,
            RxState::Cobs(d) => d.clear(),
        }
    }

    /// Read what the device has, without waiting, until one frame is complete. Returns the
    /// frame (valid until the next call) or `None` when the device has nothing more now.
    pub fn poll(&mut self) -> Result<Option<&[u8]>, LinkError> {
        Ok(self.poll_mut()?.map(|f| &*f))
    }

    /// [`FrameRx::poll`], with the frame writable (a sealed frame is opened in place).
    pub fn poll_mut(&mut self) -> Result<Option<&mut [u8]>, LinkError> {
        // Find out first whether a frame completes, then borrow it out (one borrow at the end).
        let done = loop {
            if !self.io.read_ready().map_err(|_| LinkError::Io)? {
                return Ok(None);
            }
            match &mut self.state {
                RxState::Plain { buf, have } => {
                    // Read no further than the end of this frame.
                    let want = if *have < 4 {
                        4
                    } else {
                        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        let total = (len as usize).saturating_add(RECORD_OVERHEAD - 1);
                        if len == 0 || total > RX {
                            *have = 0;
                            return Err(LinkError::FrameTooLarge {
                                len: len.saturating_add(RECORD_OVERHEAD as u32 - 1),
                            });
                        }
                        total
                    };
                    let n = self
                        .io
                        .read(&mut buf[*have..want])
                        .map_err(|_| LinkError::Io)?;
                    if n == 0 {
                        return Err(LinkError::Closed);
                    }
                    *have += n;
                    if *have == want && want > 4 {
                        *have = 0;
                        break want;
                    }
                }
                RxState::Cobs(d) => {
                    // One byte at a time: a frame may end at any byte, and the next frame's
                    // bytes must stay on the line until this one has been handled.
                    let mut byte = [0u8; 1];
                    let n = self.io.read(&mut byte).map_err(|_| LinkError::Io)?;
                    if n == 0 {
                        return Ok(None);
                    }
                    match d.feed(byte[0]) {
                        cobs::Feed::Frame(len) => break len,
                        cobs::Feed::Dropped(_) => self.dropped_frames += 1,
                        cobs::Feed::Pending => {}
                    }
                }
            }
        };
        Ok(Some(match &mut self.state {
            RxState::Plain { buf, .. } => &mut buf[..done],
            RxState::Cobs(d) => d.frame_mut(),
        }))
    }
}
