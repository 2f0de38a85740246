//! Data plane frames (`DATA`, see [`crate::proto::data`]) on the shared
//! socket: sorted out of what is received (directly, inside relay frames
//! of our relay paths, and from stream paths) and handed to the
//! [`DataReceiver`] the node installed, on the receiving task (no hop);
//! sent through the socket's usual dispatch, so that relay paths, side
//! paths and TCP stream paths carry them like QUIC packets.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use quinn::udp::Transmit;
use quinn::AsyncUdpSocket as _;

use super::AntqSocket;

/// Takes the `DATA` frames the socket receives.
pub trait DataReceiver: Send + Sync + 'static {
    /// One frame (`DATA` or `DATA_SIGNAL`) from `from`: the sender's
    /// address, or the virtual address of the relay or stream path it came
    /// on. Must not block.
    fn frame(&self, from: SocketAddr, frame: &[u8]);

    /// The end of a receive batch: hand on what the frames carried.
    fn flush(&self);
}

impl AntqSocket {
    /// Installs the receiver of `DATA` frames (once; later calls are
    /// ignored). The socket holds it weakly: frames arriving after it is
    /// dropped, or before one is installed, are dropped and counted.
    pub fn set_data_receiver(&self, receiver: Weak<dyn DataReceiver>) {
        let _ = self.data_receiver.set(receiver);
    }

    fn data_receiver(&self) -> Option<Arc<dyn DataReceiver>> {
        self.data_receiver.get().and_then(Weak::upgrade)
    }

    /// A received `DATA` frame: to the receiver, or counted as dropped.
    pub(super) fn data_frame(&self, from: SocketAddr, frame: &[u8]) {
        match self.data_receiver() {
            Some(receiver) => {
                self.stats.data_in.fetch_add(1, Ordering::Relaxed);
                receiver.frame(crate::nat::canonical(from), frame);
            }
            None => {
                self.stats.data_unclaimed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends a receive batch for the data receiver.
    pub(super) fn flush_data(&self) {
        if let Some(receiver) = self.data_receiver() {
            receiver.flush();
        }
    }

    /// Sends `DATA` frames of `segment` bytes each (the last may be
    /// shorter; `None`: one frame) to `to`, a peer's address or a virtual
    /// path's, from `src_ip` if given (the address a server-side connection
    /// was reached at). Fails with `WouldBlock` when the socket buffer is
    /// full (the frames are dropped, as a full buffer drops QUIC's).
    pub fn send_data(
        &self,
        to: SocketAddr,
        src_ip: Option<IpAddr>,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let frames = segment.map_or(1, |s| contents.len().div_ceil(s.max(1)));
        self.stats
            .data_out
            .fetch_add(frames as u64, Ordering::Relaxed);
        self.try_send(&Transmit {
            destination: self.to_wire(to),
            ecn: None,
            contents,
            segment_size: segment.filter(|&s| s < contents.len()),
            src_ip,
        })
    }
}
