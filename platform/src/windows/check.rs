//! Linux-side check of the Windows module's IP Helper parts: windows-sys
//! is plain declarations, so interfaces, routes and the change callbacks
//! type-check here, and their unit tests (which call no Windows function)
//! run. `tun.rs` needs tun-rs's Windows API and is left to CI on Windows;
//! `mod.rs` only declares and re-exports.

#[path = "gateway.rs"]
mod gateway;
#[path = "links.rs"]
mod links;
#[path = "process.rs"]
mod process;
#[path = "route.rs"]
mod route;
#[path = "sys.rs"]
mod sys;
#[path = "watch.rs"]
mod watch;
