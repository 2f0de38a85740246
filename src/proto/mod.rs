//! Control messages exchanged between peers and bootstrap nodes, and their codecs.
