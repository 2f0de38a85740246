//! Host certificates: the wire form (no cryptography here; signing and
//! verification are in [`crate::cert`]).
//!
//! A network's CA (an Ed25519 key kept offline) signs, for each host, its
//! key, name, overlay addresses, groups, the routes it may originate, and a
//! validity period. The same bytes travel in files (PEM, `ANTQ CERTIFICATE`)
//! and between hosts and bootstraps.
//!
//! ```text
//! body:
//!   magic "AQCT" (4) | version = 1 (1)
//!   network  str8    | ca key (32) | host key (32) | name str8
//!   not_before u64   | not_after u64              (Unix seconds, big-endian)
//!   addresses: count u8 (1..=8)  then each a prefix
//!   groups:    count u8 (0..=16) then each a str8
//!   routes:    count u8 (0..=32) then each a prefix
//! certificate: body | Ed25519 signature of the body by the ca key (64)
//!
//! str8:   length u8 then that many bytes (rules per field below)
//! prefix: family u8 (4 or 6) | 4 or 16 address bytes | prefix length u8
//! ```
//!
//! Decoding accepts only the canonical form (it re-encodes to the same
//! bytes), so the signature always covers exactly what was parsed:
//! - network: 1..=63 printable ASCII characters, no spaces;
//! - name: a DNS label (1..=63 of `a-z 0-9 -`, not starting or ending with
//!   `-`), as hosts are found as `NAME.antq`;
//! - groups: 1..=32 of `a-z 0-9 - _ .` each, strictly ascending (sorted, no
//!   duplicates);
//! - addresses: the host's address with the overlay's prefix length
//!   (`10.90.0.5/24`), no two the same;
//! - routes: network prefixes (host bits zero), strictly ascending;
//! - `not_before < not_after`; nothing after the signature.

use std::net::IpAddr;

use ipnet::IpNet;

use super::error::DecodeError;
use super::reader::Reader;

/// The first bytes of every certificate.
pub const CERT_MAGIC: [u8; 4] = *b"AQCT";
/// The certificate format version this code writes and reads.
pub const CERT_VERSION: u8 = 1;
/// Length of an Ed25519 public key.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Most overlay addresses in one certificate.
pub const MAX_ADDRESSES: usize = 8;
/// Most groups in one certificate.
pub const MAX_GROUPS: usize = 16;
/// Most routes in one certificate.
pub const MAX_ROUTES: usize = 32;
/// Longest network or host name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest group name.
pub const MAX_GROUP_LEN: usize = 32;
/// The largest encoded certificate (all fields at their maximum).
pub const MAX_CERT_LEN: usize = 4
    + 1
    + (1 + MAX_NAME_LEN)
    + 2 * KEY_LEN
    + (1 + MAX_NAME_LEN)
    + 16
    + 1
    + MAX_ADDRESSES * 18
    + 1
    + MAX_GROUPS * (1 + MAX_GROUP_LEN)
    + 1
    + MAX_ROUTES * 18
    + SIGNATURE_LEN;

/// What a CA certifies about one host (the signed part of a certificate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertBody {
    /// The network's name, as given to `ca init`.
    pub network: String,
    /// The signing CA's public key.
    pub ca: [u8; KEY_LEN],
    /// The host's public key (its peer id).
    pub host: [u8; KEY_LEN],
    /// The host's name (a DNS label).
    pub name: String,
    /// Valid from (Unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
    /// The host's overlay addresses, each with the overlay's prefix length.
    pub addresses: Vec<IpNet>,
    /// The groups the host belongs to (sorted, no duplicates).
    pub groups: Vec<String>,
    /// Networks beyond its own addresses the host may send from and be sent
    /// to (sorted, no duplicates, host bits zero).
    pub routes: Vec<IpNet>,
}

/// A certificate: a body and the CA's signature over its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Certificate {
    /// What is certified.
    pub body: CertBody,
    /// Ed25519 signature of `body.encode()` by `body.ca`.
    pub signature: [u8; SIGNATURE_LEN],
}

/// Why a body cannot be a certificate's (checked before encoding, and the
/// same rules as decoding).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertFieldError {
    /// The network name is empty, too long, or has a space or a
    /// non-printable or non-ASCII character.
    #[error("network name must be 1 to 63 printable ASCII characters without spaces")]
    Network,
    /// The host name is not a DNS label.
    #[error("name must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")]
    Name,
    /// A group name is empty, too long or has another character.
    #[error("group `{0}`: must be 1 to 32 of a-z, 0-9, '-', '_' and '.'")]
    Group(String),
    /// No address, or more than [`MAX_ADDRESSES`], or one twice.
    #[error("1 to 8 different addresses are needed")]
    Addresses,
    /// More than [`MAX_GROUPS`] groups.
    #[error("at most 16 groups")]
    TooManyGroups,
    /// More than [`MAX_ROUTES`] routes.
    #[error("at most 32 routes")]
    TooManyRoutes,
    /// A route with host bits set (`10.1.2.3/24` instead of `10.1.2.0/24`).
    #[error("route {0} has host bits set (use {1})")]
    RouteHostBits(IpNet, IpNet),
    /// Groups or routes not in ascending order, or one twice
    /// ([`CertBody::normalize`] sorts them).
    #[error("groups and routes must be sorted, each once")]
    Order,
    /// The validity period is empty.
    #[error("not_after must be later than not_before")]
    Validity,
}

impl CertBody {
    /// Puts groups and routes in their canonical order (sorted, duplicates
    /// removed), then checks every field.
    pub fn normalize(&mut self) -> Result<(), CertFieldError> {
        self.groups.sort();
        self.groups.dedup();
        self.routes.sort();
        self.routes.dedup();
        self.check()
    }

    /// Checks every field against the rules of the wire format.
    pub fn check(&self) -> Result<(), CertFieldError> {
        if !valid_network(&self.network) {
            return Err(CertFieldError::Network);
        }
        if !valid_label(&self.name) {
            return Err(CertFieldError::Name);
        }
        if self.addresses.is_empty()
            || self.addresses.len() > MAX_ADDRESSES
            || (1..self.addresses.len()).any(|i| self.addresses[..i].contains(&self.addresses[i]))
        {
            return Err(CertFieldError::Addresses);
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(CertFieldError::TooManyGroups);
        }
        if let Some(g) = self.groups.iter().find(|g| !valid_group(g)) {
            return Err(CertFieldError::Group(g.clone()));
        }
        if !self.groups.windows(2).all(|w| w[0] < w[1]) {
            return Err(CertFieldError::Order);
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(CertFieldError::TooManyRoutes);
        }
        if let Some(r) = self.routes.iter().find(|r| r.trunc() != **r) {
            return Err(CertFieldError::RouteHostBits(*r, r.trunc()));
        }
        if !self.routes.windows(2).all(|w| w[0] < w[1]) {
            return Err(CertFieldError::Order);
        }
        if self.not_before >= self.not_after {
            return Err(CertFieldError::Validity);
        }
        Ok(())
    }

    /// The signed bytes. The body must pass [`Self::check`] (a body that
    /// does not encodes to bytes that do not decode).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&CERT_MAGIC);
        out.push(CERT_VERSION);
        put_str8(&mut out, &self.network);
        out.extend_from_slice(&self.ca);
        out.extend_from_slice(&self.host);
        put_str8(&mut out, &self.name);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        put_count(&mut out, self.addresses.len());
        for a in &self.addresses {
            put_prefix(&mut out, a);
        }
        put_count(&mut out, self.groups.len());
        for g in &self.groups {
            put_str8(&mut out, g);
        }
        put_count(&mut out, self.routes.len());
        for r in &self.routes {
            put_prefix(&mut out, r);
        }
        out
    }

    /// Whether the certificate is valid at `now` (Unix seconds).
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// Every network the host may use as a source: its addresses (as host
    /// routes) and its routes.
    pub fn allowed_ips(&self) -> Vec<IpNet> {
        self.addresses
            .iter()
            .map(|a| IpNet::from(a.addr()))
            .chain(self.routes.iter().copied())
            .collect()
    }
}

impl Certificate {
    /// The wire form: the body's encoding, then the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body.encode();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a certificate (nothing may follow it). Returns it with the
    /// body's bytes, which the signature covers. Checks the format only:
    /// not the signature, the CA or the time.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(bad("certificate", "longer than the largest possible"));
        }
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != CERT_MAGIC {
            return Err(bad("magic", "not an antq certificate"));
        }
        if r.array::<1>()?[0] != CERT_VERSION {
            return Err(bad("version", "unsupported certificate version"));
        }
        let network = str8(&mut r, "network")?;
        let ca = r.array::<KEY_LEN>()?;
        let host = r.array::<KEY_LEN>()?;
        let name = str8(&mut r, "name")?;
        let not_before = u64::from_be_bytes(r.array::<8>()?);
        let not_after = u64::from_be_bytes(r.array::<8>()?);
        let addresses = list(&mut r, "addresses", MAX_ADDRESSES, prefix)?;
        let groups = list(&mut r, "groups", MAX_GROUPS, |r| str8(r, "group"))?;
        let routes = list(&mut r, "routes", MAX_ROUTES, prefix)?;
        let body_len = bytes.len() - r.rest_len();
        let signature = r.array::<SIGNATURE_LEN>()?;
        if r.rest_len() != 0 {
            return Err(bad("certificate", "bytes after the signature"));
        }
        let body = CertBody {
            network,
            ca,
            host,
            name,
            not_before,
            not_after,
            addresses,
            groups,
            routes,
        };
        body.check().map_err(|e| match e {
            CertFieldError::Network => bad("network", "invalid characters or length"),
            CertFieldError::Name => bad("name", "not a DNS label"),
            CertFieldError::Group(_) => bad("groups", "invalid characters or length"),
            CertFieldError::Order => bad("groups or routes", "unsorted or repeated"),
            CertFieldError::Addresses => bad("addresses", "none, too many or repeated"),
            CertFieldError::TooManyGroups => bad("groups", "too many"),
            CertFieldError::TooManyRoutes | CertFieldError::RouteHostBits(..) => {
                bad("routes", "too many, or host bits set")
            }
            CertFieldError::Validity => bad("validity", "not_after is not after not_before"),
        })?;
        Ok((Self { body, signature }, &bytes[..body_len]))
    }
}

fn bad(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { field, reason }
}

fn valid_network(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `s` is a DNS label of lower-case letters, digits and hyphens.
pub fn valid_label(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` can be a group name.
pub fn valid_group(s: &str) -> bool {
    (1..=MAX_GROUP_LEN).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.push(u8::try_from(n).unwrap_or(u8::MAX));
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u8::MAX))];
    put_count(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_prefix(out: &mut Vec<u8>, p: &IpNet) {
    match p.addr() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.push(p.prefix_len());
}

fn str8(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let len = usize::from(r.array::<1>()?[0]);
    let bytes = r.bytes(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(field, "not UTF-8"))
}

fn prefix(r: &mut Reader<'_>) -> Result<IpNet, DecodeError> {
    let addr = match r.array::<1>()?[0] {
        4 => IpAddr::V4(r.ipv4()?),
        6 => IpAddr::V6(r.ipv6()?),
        _ => return Err(bad("prefix", "address family is neither 4 nor 6")),
    };
    let len = r.array::<1>()?[0];
    IpNet::new(addr, len).map_err(|_| bad("prefix", "prefix length too long"))
}

fn list<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = usize::from(r.array::<1>()?[0]);
    if n > max {
        return Err(bad(field, "too many entries"));
    }
    (0..n).map(|_| item(r)).collect()
}
