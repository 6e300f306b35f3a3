//! One RESP connection: send a command, read exactly one reply.

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::resp::{self, Frame, ParseError};

#[derive(Debug, Error)]
pub enum CallError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("not RESP: {0}")]
    Protocol(#[from] ParseError),
}

pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and latency-bound: never wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(Conn { stream, rbuf: BytesMut::with_capacity(4096), wbuf: Vec::with_capacity(256) })
    }

    /// Sends one command and returns its reply. After an error the connection is in an unknown
    /// state: drop it.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, CallError> {
        self.wbuf.clear();
        resp::encode_command(&mut self.wbuf, args);
        self.stream.write_all(&self.wbuf).await?;
        loop {
            if let Some((frame, used)) = resp::parse(&self.rbuf)? {
                self.rbuf.advance(used);
                return Ok(frame);
            }
            self.rbuf.reserve(4096);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(CallError::Closed);
            }
        }
    }

    /// Whether an idle connection can be reused: the server has not closed it (nor sent anything
    /// unasked). Servers and proxies close idle connections — Toxiproxy closes every connection
    /// when a timeout toxic is removed — and the next request on one would fail for nothing.
    /// A non-blocking peek at the socket itself, not tokio's cached readiness.
    pub fn is_open(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::uninit(); 1];
        let peeked = socket2::SockRef::from(&self.stream).peek(&mut probe);
        matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Whether bytes are waiting that no request asked for (a reply that arrived too late, or a
    /// server that talks out of turn): such a connection must not be reused.
    pub fn has_unread(&self) -> bool {
        !self.rbuf.is_empty()
    }
}
