//! The bootstrap node: a public node that peers keep a QUIC connection to.
//! It reports the address it observes for each peer, keeps a registry of
//! connected peers and their candidates, forwards coordination messages
//! between peers and relays traffic for pairs that cannot connect directly.
