//! The sockets of a link: [`Pipe`], the in-process byte queue between a socket and one half
//! of a link, and [`Conn`], one non-blocking TCP connection to or from a peer with the frame
//! being read from it and, with a cluster key, its sealed link.

use super::*;

/// An in-process byte queue between the sockets and one half of a link.
#[derive(Clone, Default)]
pub(crate) struct Pipe(pub(crate) Rc<RefCell<VecDeque<u8>>>);

impl embedded_io::ErrorType for Pipe {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut q = self.0.borrow_mut();
        let n = buf.len().min(q.len());
        for (dst, src) in buf[..n].iter_mut().zip(q.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Pipe {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.borrow().is_empty())
    }
}

impl embedded_io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.borrow_mut().extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io::WriteReady for Pipe {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A non-blocking socket, the bytes of the frame being assembled from it, and its sealed
/// link when the cluster key is set (`--psk-file`): as in `shoald`, every connection is its own
/// sealed link, the dialer its initiator.
pub(crate) struct Conn {
    stream: TcpStream,
    partial: Vec<u8>,
    seal: Option<Box<Link>>,
}

/// What a received record was, after the sealed link (if any) handled it.
pub(crate) enum Unsealed {
    /// A wire frame.
    Frame(Vec<u8>),
    /// A handshake frame, answered; `opened`: the sealed link is now open.
    Handshake { opened: bool },
}

fn os_nonce() -> Nonce {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("the operating system's random generator failed");
    n
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, seal: Option<Link>) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            partial: Vec::new(),
            seal: seal.map(Box::new),
        })
    }

    /// Write a small frame (a handshake) whole, waiting for the socket if it must.
    pub(crate) fn send_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.set_nonblocking(false)?;
        let r = self.stream.write_all(bytes);
        self.stream.set_nonblocking(true)?;
        r
    }

    /// Start the sealed handshake on a connection this node dialed.
    pub(crate) fn dial_sealed(&mut self) -> io::Result<()> {
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        let Some(link) = &mut self.seal else {
            return Ok(());
        };
        let n = link
            .dial(&mut os_nonce, &mut out)
            .expect("room for a Hello");
        self.send_now(&out[..n])
    }

    /// Pass a received record through the sealed link; `Err` (with the reason) refuses the
    /// connection.
    pub(crate) fn unseal(&mut self, mut record: Vec<u8>) -> Result<Unsealed, String> {
        let Some(link) = &mut self.seal else {
            return Ok(Unsealed::Frame(record));
        };
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        let (reply, opened) = match link.receive(&mut record, &mut os_nonce, &mut out) {
            Ok(Received::Data { plain, .. }) => return Ok(Unsealed::Frame(plain.to_vec())),
            Ok(Received::Reply(n)) => (n, false),
            Ok(Received::Opened { reply }) => (reply, true),
            Ok(Received::Ignored) => (0, false),
            Err(r) => {
                if let Some(n) = r.answer().and_then(|why| Link::refusal(why, &mut out)) {
                    let _ = self.send_now(&out[..n]);
                }
                return Err(r.to_string());
            }
        };
        self.send_now(&out[..reply]).map_err(|e| e.to_string())?;
        Ok(Unsealed::Handshake { opened })
    }

    /// Append the wire frames in `plain` (whole frames back to back) to `out`, each sealed
    /// when the link is; nothing while a sealed link is not open yet (the runtime repeats its
    /// `Hello`, and sends nothing else before the handshake).
    pub(crate) fn seal_frames(&mut self, plain: &[u8], out: &mut VecDeque<u8>) {
        let Some(link) = &mut self.seal else {
            out.extend(plain);
            return;
        };
        if !link.is_open() {
            return;
        }
        let mut rest = plain;
        while let Some(len) = shoal_core::record::peek_len(rest).filter(|&l| l <= rest.len()) {
            let mut buf = vec![0u8; len + shoal_seal::SEAL_OVERHEAD];
            let n = link.seal(&rest[..len], &mut buf).expect("open, with room");
            out.extend(&buf[..n]);
            rest = &rest[len..];
        }
    }

    /// Read what the socket has and return the whole frames it completed; `Err` when the
    /// connection is closed or broken.
    pub(crate) fn read_frames(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut buf = [0u8; 64 << 10];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut frames = Vec::new();
        while self.partial.len() >= 4 {
            // The length counts the body; the frame adds itself, the version and the CRC
            // (`shoal_core::record`), as shoald's `read_record` reads it.
            let len = u32::from_le_bytes(self.partial[..4].try_into().expect("4 bytes")) as usize;
            let total = len + 8;
            if len == 0 || total > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame length {total}"),
                ));
            }
            if self.partial.len() < total {
                break;
            }
            frames.push(self.partial.drain(..total).collect());
        }
        Ok(frames)
    }

    /// Write as much of `out` as the socket takes now, removing it from `out`.
    pub(crate) fn write_some(&mut self, out: &mut VecDeque<u8>) -> io::Result<()> {
        while !out.is_empty() {
            let (a, _) = out.as_slices();
            match self.stream.write(a) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
