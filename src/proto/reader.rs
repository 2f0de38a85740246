//! A bounds-checked cursor over a received payload (crate-internal).
//!
//! Every read either returns the requested item or a
//! [`DecodeError::Truncated`]; nothing here can panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::DecodeError;
use super::varint::decode_varint;

/// A forward-only reader over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Reads a QUIC varint.
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let (value, len) = decode_varint(self.buf)?;
        self.skip(len);
        Ok(value)
    }

    /// Reads a varint that must fit in a `u32`.
    pub(crate) fn varint_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| DecodeError::ValueOutOfRange { field, value })
    }

    /// Reads exactly `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated {
                needed: N,
                available: self.buf.len(),
            })?;
        self.buf = rest;
        Ok(*head)
    }

    /// Reads a big-endian `u16`.
    pub(crate) fn u16_be(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    pub(crate) fn u32_be(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads 4 address bytes.
    pub(crate) fn ipv4(&mut self) -> Result<Ipv4Addr, DecodeError> {
        self.array::<4>().map(Ipv4Addr::from)
    }

    /// Reads 16 address bytes.
    pub(crate) fn ipv6(&mut self) -> Result<Ipv6Addr, DecodeError> {
        self.array::<16>().map(Ipv6Addr::from)
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read.
    pub(crate) fn finish(self, frame_type: u64) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                frame_type,
                extra: self.buf.len(),
            })
        }
    }

    /// Drops `len` bytes (saturating at the end of the buffer).
    /// Reads exactly `len` bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                available: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// How many bytes are left.
    pub(crate) fn rest_len(&self) -> usize {
        self.buf.len()
    }

    fn skip(&mut self, len: usize) {
        self.buf = self.buf.get(len..).unwrap_or_default();
    }
}
