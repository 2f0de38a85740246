//! The control channel of a connection: framed [`ControlMessage`]s on one
//! unidirectional QUIC stream in each direction.
//!
//! The accepting side opens its stream first and sends `HELLO` once it has
//! accepted the peer's key; the dialing side reads that `HELLO` (proof that
//! it was accepted), then opens its own stream with its `HELLO`. After that,
//! messages are read from the stream when asked for ([`ControlChannel::recv`])
//! and written by a writer task, started with the first message sent. Only a
//! bootstrap link carries messages after the `HELLO`s: a connection between
//! peers holds no task and no queue for its control channel (a node with
//! many peers would pay for two queues and two tasks per connection).
//! Unknown frame types are skipped; a malformed frame closes the connection
//! with [`PROTOCOL_VIOLATION`].

use std::sync::{OnceLock, PoisonError};

use tokio::sync::{mpsc, Mutex};

use crate::proto::{decode_frame, ControlMessage, DecodeError};

/// Protocol version sent in `HELLO`.
pub const PROTOCOL_VERSION: u64 = 1;

/// Application error code used to close a connection whose peer sent a
/// malformed control frame.
pub const PROTOCOL_VIOLATION: u32 = 0x0a;

/// How many messages may wait to be written.
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
pub struct ControlChannel {
    conn: quinn::Connection,
    /// Our stream, until the first message starts the writer task.
    send: std::sync::Mutex<Option<quinn::SendStream>>,
    /// The writer task's queue, once started.
    tx: OnceLock<mpsc::Sender<ControlMessage>>,
    /// The peer's stream; `None` once it ended or failed.
    reader: Mutex<Option<FrameReader>>,
}

impl std::fmt::Debug for ControlChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlChannel")
            .field("writer_started", &self.tx.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ControlChannel {
    /// Wraps an established channel (both `HELLO`s exchanged).
    pub(crate) fn new(
        conn: quinn::Connection,
        send: quinn::SendStream,
        reader: FrameReader,
    ) -> Self {
        Self {
            conn,
            send: std::sync::Mutex::new(Some(send)),
            tx: OnceLock::new(),
            reader: Mutex::new(Some(reader)),
        }
    }

    /// The writer task's queue, starting the task on first use.
    fn writer(&self) -> &mpsc::Sender<ControlMessage> {
        self.tx.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<ControlMessage>(QUEUE);
            let send = self
                .send
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(mut send) = send {
                tokio::spawn(async move {
                    while let Some(msg) = rx.recv().await {
                        if let Err(error) = write(&mut send, &msg).await {
                            tracing::debug!(%error, "control writer stopped");
                            break;
                        }
                    }
                });
            }
            tx
        })
    }

    /// Queues a message for the peer.
    pub async fn send(&self, msg: ControlMessage) -> Result<(), ControlError> {
        self.writer()
            .send(msg)
            .await
            .map_err(|_| ControlError::Closed)
    }

    /// Queues a message without waiting; fails if the queue is full.
    pub fn try_send(&self, msg: ControlMessage) -> Result<(), ControlError> {
        self.writer()
            .try_send(msg)
            .map_err(|_| ControlError::Closed)
    }

    /// The next message from the peer; `None` once the channel is closed.
    /// A malformed frame closes the connection. Cancel-safe: a message is
    /// only taken off the stream when it is returned.
    pub async fn recv(&self) -> Option<ControlMessage> {
        let mut guard = self.reader.lock().await;
        let reader = guard.as_mut()?;
        match reader.next().await {
            Ok(Some(msg)) => return Some(msg),
            Ok(None) => {}
            Err(ControlError::Malformed(error)) => {
                tracing::debug!(%error, "malformed control frame; closing the connection");
                self.conn
                    .close(PROTOCOL_VIOLATION.into(), b"malformed control frame");
            }
            Err(error) => tracing::debug!(%error, "control reader stopped"),
        }
        *guard = None;
        None
    }
}
