//! Error types of the `proto` codecs.

use thiserror::Error;

/// Why some bytes could not be decoded.
///
/// Every decoding function in [`crate::proto`] reports malformed network
/// input through this type; none of them panics on any input.
///
/// For the stream decoder ([`crate::proto::decode_frame`]) every error is
/// fatal to the stream: the peer violated the protocol and the caller should
/// close the stream (or the connection). A frame that is merely incomplete is
/// not an error (`Ok(None)`), and a frame of an unknown type is not an error
/// either (it decodes to [`crate::proto::ControlMessage::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field, varint or fixed-size frame was
    /// complete.
    ///
    /// `needed` is the number of bytes that the item being decoded requires
    /// (counted from its first byte) as far as it is known, and `available`
    /// the number of bytes that were there.
    #[error("truncated input: needed {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the item requires.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// A raw UDP frame whose first byte is in the antq range (`0x00..=0x3f`)
    /// but names no known raw frame type.
    #[error("unknown frame type {frame_type:#x}")]
    UnknownType {
        /// The type found on the wire.
        frame_type: u64,
    },
    /// A frame of a known type where a different type was required (for
    /// example [`crate::proto::raw::parse_relay`] given a punch probe).
    #[error("unexpected frame type {found:#x}, expected {expected:#x}")]
    UnexpectedType {
        /// The type the caller asked for.
        expected: u64,
        /// The type found on the wire.
        found: u64,
    },
    /// A control frame declared a payload longer than
    /// [`crate::proto::MAX_PAYLOAD_LEN`]. Reported as soon as the length
    /// field is readable, before the payload arrives.
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The declared payload length.
        len: u64,
        /// The maximum allowed payload length.
        max: usize,
    },
    /// A control frame's payload continued after its last field.
    #[error("{extra} trailing bytes in the payload of frame type {frame_type:#x}")]
    TrailingBytes {
        /// The type of the frame whose payload was too long.
        frame_type: u64,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A `FORWARD` frame whose inner message is itself a `FORWARD`.
    #[error("FORWARD frame nested inside a FORWARD frame")]
    NestedForward,
    /// A field that is complete but breaks its rules (for example a
    /// certificate whose name is not a DNS label).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A well-formed varint whose value does not fit the field it encodes
    /// (for example a `PUNCH_ME_NOW` round above `u32::MAX`).
    #[error("value {value} out of range for field `{field}`")]
    ValueOutOfRange {
        /// The name of the field.
        field: &'static str,
        /// The value found on the wire.
        value: u64,
    },
}

/// Why a message could not be encoded.
///
/// Encoding only fails for values that cannot be represented on the wire;
/// anything produced by a successful decode encodes without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A value above [`crate::proto::VARINT_MAX`] (2^62 - 1) was to be
    /// written as a QUIC varint.
    #[error("value {0} does not fit in a QUIC varint")]
    VarintOverflow(u64),
    /// A `FORWARD` message whose inner message is itself a `FORWARD`.
    #[error("FORWARD message nested inside a FORWARD message")]
    NestedForward,
    /// A [`crate::proto::ControlMessage::Unknown`] whose type is one of the
    /// known frame types: it would decode as something else.
    #[error("frame type {0:#x} is a known type and cannot be sent as Unknown")]
    KnownTypeAsUnknown(u64),
    /// A message whose addresses must share a family (the frame type names
    /// it) mixes IPv4 and IPv6.
    #[error("the addresses of frame type {0:#x} mix IPv4 and IPv6")]
    MixedFamilies(u64),
    /// The payload would exceed [`crate::proto::MAX_PAYLOAD_LEN`].
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The payload length that would have been written.
        len: usize,
        /// The maximum allowed payload length.
        max: usize,
    },
}
