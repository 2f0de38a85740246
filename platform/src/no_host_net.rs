//! [`crate::host_net`] where it is not implemented yet (macOS, Windows,
//! other OSes): nothing to change succeeds, anything else is
//! [`PlatformError::Unsupported`].

use std::path::PathBuf;

use crate::host_net::{HostChange, HostNetConfig};
use crate::PlatformError;

/// No changes are ever made here.
#[derive(Debug)]
pub(crate) struct HostNet;

impl HostNet {
    pub(crate) fn changes(&self) -> Vec<HostChange> {
        Vec::new()
    }

    pub(crate) async fn restore(self) -> Result<(), PlatformError> {
        Ok(())
    }
}

pub(crate) async fn apply_host_net(
    _name: &str,
    _index: u32,
    cfg: &HostNetConfig,
) -> Result<HostNet, PlatformError> {
    if cfg.is_empty() {
        return Ok(HostNet);
    }
    Err(PlatformError::Unsupported {
        what: "forwarding for peers (gateway, exit) and exit nodes (Linux only for now)",
    })
}

pub(crate) fn host_net_state_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("antq-{name}.hostnet"))
}

pub(crate) fn set_socket_mark(
    _socket: socket2::SockRef<'_>,
    _mark: u32,
) -> Result<(), PlatformError> {
    Err(PlatformError::Unsupported {
        what: "socket marks (Linux only)",
    })
}
