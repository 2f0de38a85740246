//! The control channel of a connection: framed [`ControlMessage`]s on one
//! unidirectional QUIC stream in each direction.
//!
//! The accepting side opens its stream first and sends `HELLO` once it has
//! accepted the peer's key; the dialing side reads that `HELLO` (proof that
//! it was accepted), then opens its own stream with its `HELLO`. After that,
//! a writer task and a reader task move messages between the streams and
//! channels. Unknown frame types are skipped; a malformed frame closes the
//! connection with [`PROTOCOL_VIOLATION`].

use tokio::sync::{mpsc, Mutex};

use crate::proto::{decode_frame, ControlMessage, DecodeError};

/// Protocol version sent in `HELLO`.
pub const PROTOCOL_VERSION: u64 = 1;

/// Application error code used to close a connection whose peer sent a
/// malformed control frame.
pub const PROTOCOL_VIOLATION: u32 = 0x0a;

/// How many messages may wait in each direction.
const QUEUE: usize = 256;

/// Errors of the control channel.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The peer sent bytes that are not a valid control frame.
    #[error("malformed control frame: {0}")]
    Malformed(#[from] DecodeError),
    /// The stream ended or failed.
    #[error("control stream: {0}")]
    Stream(String),
    /// The first message was not `HELLO`, or spoke another version.
    #[error("expected HELLO version {PROTOCOL_VERSION}, got {0}")]
    BadHello(String),
    /// The channel is closed.
    #[error("control channel closed")]
    Closed,
}

/// Reads framed control messages from a stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            buf: Vec::new(),
        }
    }

    /// The next known message; `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<ControlMessage>, ControlError> {
        loop {
            if let Some((msg, used)) = decode_frame(&self.buf)? {
                self.buf.drain(..used);
                match msg {
                    ControlMessage::Unknown { frame_type, .. } => {
                        tracing::debug!(frame_type, "skipping unknown control frame");
                    }
                    msg => return Ok(Some(msg)),
                }
                continue;
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(ControlError::Stream("stream ended inside a frame".into())),
                Err(e) => return Err(ControlError::Stream(e.to_string())),
            }
        }
    }

    /// Reads the peer's `HELLO`.
    pub(crate) async fn expect_hello(&mut self) -> Result<(), ControlError> {
        match self.next().await? {
            Some(ControlMessage::Hello { version, .. }) if version == PROTOCOL_VERSION => Ok(()),
            other => Err(ControlError::BadHello(format!("{other:?}"))),
        }
    }
}

/// Writes our `HELLO` on a freshly opened stream.
pub(crate) async fn send_hello(send: &mut quinn::SendStream) -> Result<(), ControlError> {
    write(
        send,
        &ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            flags: 0,
        },
    )
    .await
}

async fn write(send: &mut quinn::SendStream, msg: &ControlMessage) -> Result<(), ControlError> {
    let mut buf = Vec::new();
    msg.encode(&mut buf)
        .map_err(|e| ControlError::Stream(format!("cannot encode {msg:?}: {e}")))?;
    send.write_all(&buf)
        .await
        .map_err(|e| ControlError::Stream(e.to_string()))
}

/// Both directions of a connection's control channel.
#[derive(Debug)]
pub struct ControlChannel {
    tx: mpsc::Sender<ControlMessage>,
    rx: Mutex<mpsc::Receiver<ControlMessage>>,
}

impl ControlChannel {
    /// Starts the reader and writer tasks for an established channel.
    pub(crate) fn spawn(
        conn: quinn::Connection,
        mut send: quinn::SendStream,
        mut reader: FrameReader,
    ) -> Self {
        let (out_tx, mut out_rx) = mpsc::channel::<ControlMessage>(QUEUE);
        let (in_tx, in_rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if let Err(error) = write(&mut send, &msg).await {
                    tracing::debug!(%error, "control writer stopped");
                    break;
                }
            }
        });
        tokio::spawn(async move {
            loop {
                match reader.next().await {
                    Ok(Some(msg)) => {
                        if in_tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(ControlError::Malformed(error)) => {
                        tracing::debug!(%error, "malformed control frame; closing the connection");
                        conn.close(PROTOCOL_VIOLATION.into(), b"malformed control frame");
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "control reader stopped");
                        break;
                    }
                }
            }
        });
        Self {
            tx: out_tx,
            rx: Mutex::new(in_rx),
        }
    }

    /// Queues a message for the peer.
    pub async fn send(&self, msg: ControlMessage) -> Result<(), ControlError> {
        self.tx.send(msg).await.map_err(|_| ControlError::Closed)
    }

    /// Queues a message without waiting; fails if the queue is full.
    pub fn try_send(&self, msg: ControlMessage) -> Result<(), ControlError> {
        self.tx.try_send(msg).map_err(|_| ControlError::Closed)
    }

    /// The next message from the peer; `None` once the channel is closed.
    pub async fn recv(&self) -> Option<ControlMessage> {
        self.rx.lock().await.recv().await
    }
}
