//! The data plane's per-connection state, sans-IO: keys from the QUIC
//! connection's TLS exporter, the sending counter, key epochs and the
//! replay window. Frames are described in [`crate::proto::data`].
//!
//! Tunnel packets ride QUIC datagrams unless both ends negotiated the data
//! plane (ALPN `antq/2`, see [`crate::tls`]). Then each direction has:
//!
//! - a **secret** and a **receiver index**, from 72 bytes of the connection's
//!   exporter (label [`EXPORTER_LABEL`]): client-to-server secret, then
//!   server-to-client secret (32 bytes each), then the two receiver indexes
//!   (4 bytes each, same order). Only the two ends of that TLS session know
//!   them; a new connection has new ones.
//! - **keys per epoch**: packet `counter` is sealed with the AES-256-GCM key
//!   of epoch `counter >> 22` (HKDF-SHA256 expand of the direction's secret
//!   with `"antq data key"` and the epoch as 8 bytes), so no key seals more
//!   than 2^22 packets (AES-GCM's confidentiality limit in QUIC, RFC 9001
//!   §6.6, is 2^23). The nonce is four zero bytes and the counter: it never
//!   repeats under one key.
//! - a **replay window** at the receiver ([`ReplayWindow`], 1,984 counters
//!   behind the highest accepted one), updated only by frames that opened.
//!
//! The receiver keeps the keys of the previous, current and next epochs, so
//! reordering across an epoch change costs nothing and a forged frame costs
//! one failed open (no key derivation). Nothing here reads a clock, a socket
//! or a random number generator.
//!
//! Vector (`vector_frame.txt`, checked against Python's `hmac` and
//! `cryptography` AES-GCM): with exporter bytes `00 01 .. 47`, the client's
//! first frame carrying `45 00 00 00` is
//! `07 40414243 0000000000000000 e816afb4 79eed1b2208af2d2558382217ec1f050`.

mod replay;
mod session;

pub use replay::ReplayWindow;
pub use session::{DataSession, ANSWER_AFTER, HELLO_INTERVAL};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf;

use crate::proto::data::{DataHeader, DataKind, TAG_LEN};

/// The TLS exporter label of the data plane's secrets.
pub const EXPORTER_LABEL: &[u8] = b"antq data v1";

/// Bytes taken from the exporter: two secrets and two receiver indexes.
pub const EXPORTER_LEN: usize = 72;

/// Packets sealed under one key: a new epoch begins every 2^22 packets.
pub const EPOCH_BITS: u32 = 22;

/// The last counter a sender uses; a session needs a new connection after
/// it (about 10^19 packets: never, in practice).
pub const MAX_COUNTER: u64 = u64::MAX - 1;

/// Why a frame was not sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The counter was seen before (a replay or a duplicate).
    #[error("counter already received")]
    Replayed,
    /// The counter is further behind the newest than the replay window.
    #[error("counter too old for the replay window")]
    TooOld,
    /// The counter's epoch is not the previous, current or next one.
    #[error("key epoch out of range")]
    Epoch,
    /// The tag did not verify: forged, damaged, or another session's.
    #[error("authentication failed")]
    Auth,
    /// The sender used its last counter.
    #[error("counter space exhausted")]
    Exhausted,
}

/// One direction's secret.
#[derive(Clone)]
struct Secret(hkdf::Prk);

impl Secret {
    fn new(bytes: &[u8]) -> Self {
        Secret(hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, bytes))
    }

    /// The AEAD key of `epoch`.
    fn key(&self, epoch: u64) -> LessSafeKey {
        let epoch = epoch.to_be_bytes();
        let info = [b"antq data key".as_slice(), &epoch];
        let okm = self
            .0
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes is within HKDF-SHA256's output limit");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn epoch(counter: u64) -> u64 {
    counter >> EPOCH_BITS
}

/// Both directions of a connection's data plane, as derived from its
/// exporter: split into [`Sealer`] and [`Opener`].
pub struct DataKeys {
    /// Seals what we send.
    pub sealer: Sealer,
    /// Opens what we receive.
    pub opener: Opener,
    /// Our receiver index: frames for us carry it.
    pub local_index: u32,
}

impl DataKeys {
    /// The keys of one end of a connection from its exporter output
    /// (label [`EXPORTER_LABEL`], no context). `client` says which end we
    /// are: the client sends with the first secret and index.
    pub fn from_exporter(material: &[u8; EXPORTER_LEN], client: bool) -> Self {
        let (c2s, rest) = material.split_at(32);
        let (s2c, indexes) = rest.split_at(32);
        let c2s_index = u32::from_be_bytes([indexes[0], indexes[1], indexes[2], indexes[3]]);
        let s2c_index = u32::from_be_bytes([indexes[4], indexes[5], indexes[6], indexes[7]]);
        let (send, recv, send_to, local_index) = if client {
            (c2s, s2c, c2s_index, s2c_index)
        } else {
            (s2c, c2s, s2c_index, c2s_index)
        };
        DataKeys {
            sealer: Sealer::new(Secret::new(send), send_to),
            opener: Opener::new(Secret::new(recv)),
            local_index,
        }
    }
}

/// The sending half: counter and current key.
pub struct Sealer {
    secret: Secret,
    receiver: u32,
    counter: u64,
    key: (u64, LessSafeKey),
}

impl Sealer {
    fn new(secret: Secret, receiver: u32) -> Self {
        let key = (0, secret.key(0));
        Sealer {
            secret,
            receiver,
            counter: 0,
            key,
        }
    }

    /// Frames sealed so far.
    pub fn sent(&self) -> u64 {
        self.counter
    }

    /// Appends a frame of `kind` carrying `payload` to `out`; returns its
    /// length (`payload.len()` + [`DataHeader::OVERHEAD`]).
    pub fn seal(
        &mut self,
        kind: DataKind,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, DataError> {
        if self.counter > MAX_COUNTER {
            return Err(DataError::Exhausted);
        }
        let counter = self.counter;
        self.counter += 1;
        if self.key.0 != epoch(counter) {
            self.key = (epoch(counter), self.secret.key(epoch(counter)));
        }
        let header = DataHeader {
            kind,
            receiver: self.receiver,
            counter,
        }
        .to_bytes();
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        let tag = self
            .key
            .1
            .seal_in_place_separate_tag(
                nonce(counter),
                Aad::from(header),
                &mut out[start + DataHeader::LEN..],
            )
            .map_err(|_| DataError::Exhausted)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out.len() - start)
    }
}

/// The receiving half: keys of three epochs and the replay window.
pub struct Opener {
    secret: Secret,
    /// The epoch of the newest accepted counter.
    current: u64,
    /// Keys of `current - 1`, `current`, `current + 1` (derived when first
    /// needed).
    keys: [Option<LessSafeKey>; 3],
    window: ReplayWindow,
}

impl Opener {
    fn new(secret: Secret) -> Self {
        let keys = [None, Some(secret.key(0)), None];
        Opener {
            secret,
            current: 0,
            keys,
            window: ReplayWindow::default(),
        }
    }

    /// Opens a frame's sealed part in place (`sealed` is the payload and
    /// its tag, as [`DataHeader::decode`] returns it); returns the payload.
    /// The replay window and the epoch move only for a frame that opened.
    pub fn open<'a>(
        &mut self,
        header: DataHeader,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], DataError> {
        self.window.check(header.counter)?;
        let e = epoch(header.counter);
        let slot = if e + 1 == self.current {
            0
        } else if e == self.current {
            1
        } else if e == self.current + 1 {
            2
        } else {
            return Err(DataError::Epoch);
        };
        let key = match &mut self.keys[slot] {
            Some(key) => key,
            empty => empty.insert(self.secret.key(e)),
        };
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(DataError::Auth)?;
        let (payload, tag) = sealed.split_at_mut(split);
        let tag = Tag::try_from(&*tag).map_err(|_| DataError::Auth)?;
        key.open_in_place_separate_tag(
            nonce(header.counter),
            Aad::from(header.to_bytes()),
            tag,
            payload,
            0..,
        )
        .map_err(|_| DataError::Auth)?;
        self.window.commit(header.counter);
        if slot == 2 {
            self.current += 1;
            self.keys.rotate_left(1);
            self.keys[2] = None;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests;
