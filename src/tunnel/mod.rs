//! TUN pump and AllowedIPs routing.
