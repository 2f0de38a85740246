//! OS-specific parts of antq: network interface discovery, change events,
//! TUN device and route setup. Every `#[cfg(target_os)]` of the project lives
//! in this crate, so the portable core in `antq` never needs one.
