//! The shared socket's Prometheus metrics, read from its [`SocketStats`].

use super::SocketStats;
use crate::metrics::{load, Registry};

/// Adds the shared socket's counters (drops by reason, relay and stream
/// frames) to `r`.
pub(crate) fn collect_socket(s: &SocketStats, r: &mut Registry) {
    let f = r.counter(
        "antq_socket_dropped_total",
        "Datagrams dropped by the shared socket, by reason.",
    );
    for (reason, c) in [
        ("raw_queue_full", &s.raw_dropped),
        ("relay_unknown_channel", &s.relay_unknown),
        ("relay_unroutable", &s.relay_unroutable),
        ("relay_rate_limited", &s.forward_limited),
        ("relay_queue_full", &s.forward_queue_full),
        ("stream_dropped", &s.stream_dropped),
        ("side_dropped", &s.side_dropped),
        ("side_unroutable", &s.side_unroutable),
        ("data_unclaimed", &s.data_unclaimed),
    ] {
        f.int(&[("reason", reason)], load(c));
    }
    let f = r.counter(
        "antq_data_frames_total",
        "Data plane (DATA) frames on the shared socket, by direction.",
    );
    f.int(&[("direction", "in")], load(&s.data_in));
    f.int(&[("direction", "out")], load(&s.data_out));
    let f = r.counter(
        "antq_relay_frames_total",
        "RELAY_DATA frames of our own relay paths, by direction.",
    );
    f.int(&[("direction", "in")], load(&s.relay_in));
    f.int(&[("direction", "out")], load(&s.relay_out));
    r.counter(
        "antq_relay_forwarded_frames_total",
        "Relay frames forwarded between two peers (bootstrap side).",
    )
    .int(&[], load(&s.forwarded));
    r.counter(
        "antq_relay_forward_delayed_frames_total",
        "Relay frames that waited for their direction's pacer (above the \
         rate, within the burst) before being forwarded (bootstrap side).",
    )
    .int(&[], load(&s.forward_delayed));
    r.counter(
        "antq_relay_forwarded_bytes_total",
        "Bytes of relay frames forwarded between two peers (bootstrap side).",
    )
    .int(&[], load(&s.forwarded_bytes));
    let f = r.counter(
        "antq_stream_frames_total",
        "Frames on TCP stream paths, by direction.",
    );
    f.int(&[("direction", "in")], load(&s.stream_frames_in));
    f.int(&[("direction", "out")], load(&s.stream_frames_out));
    r.counter(
        "antq_side_sockets_opened_total",
        "Extra UDP sockets opened for birthday probing (hard NAT side).",
    )
    .int(&[], load(&s.side_sockets_opened));
    r.counter(
        "antq_side_packets_total",
        "QUIC packets received on side paths (a birthday attempt's winning socket).",
    )
    .int(&[], load(&s.side_in));
    r.counter(
        "antq_stream_errors_total",
        "TCP streams closed for a framing error.",
    )
    .int(&[], load(&s.stream_errors));
    r.counter(
        "antq_streams_refused_total",
        "Incoming TCP streams refused or closed by the listener's limits: rate, per-IP or \
         total cap, no preface or first frame in time, not claimed by an authenticated \
         connection in time (by reason: antq_bootstrap_refused_total).",
    )
    .int(&[], load(&s.streams_refused));
}
