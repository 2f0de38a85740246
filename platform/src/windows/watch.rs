//! Change events from IP Helper notifications: interface, unicast address
//! and route changes, each delivered by a callback on a thread of IP
//! Helper's, which sends into a channel.

use std::ffi::c_void;
use std::net::IpAddr;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    CancelMibChangeNotify2, MibAddInstance, MibDeleteInstance, MibInitialNotification,
    MibParameterNotification, NotifyIpInterfaceChange, NotifyRouteChange2,
    NotifyUnicastIpAddressChange, MIB_IPFORWARD_ROW2, MIB_IPINTERFACE_ROW, MIB_NOTIFICATION_TYPE,
    MIB_UNICASTIPADDRESS_ROW,
};
use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;

use super::sys::{check, ip_of_inet};
use crate::{ChangeEvent, PlatformError};

type Sender = UnboundedSender<ChangeEvent>;

pub(crate) struct ChangeWatcher {
    events: UnboundedReceiver<ChangeEvent>,
    _registration: Registration,
}

impl ChangeWatcher {
    pub(crate) async fn next(&mut self) -> Option<ChangeEvent> {
        self.events.recv().await
    }
}

/// The notification handles and the callbacks' context (a boxed sender).
/// Dropping it cancels the notifications, then frees the context.
struct Registration {
    handles: Vec<HANDLE>,
    context: *mut Sender,
}

// SAFETY: the handles are process-wide registration handles that may be
// cancelled from any thread, and the context is only read through `&` by
// the callbacks (UnboundedSender is Sync) until it is freed after the last
// cancellation.
unsafe impl Send for Registration {}
// SAFETY: as above; `&Registration` allows nothing.
unsafe impl Sync for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        for &handle in &self.handles {
            // SAFETY: `handle` came from a successful Notify* call and is
            // cancelled once. The call waits for running callbacks.
            unsafe { CancelMibChangeNotify2(handle) };
        }
        // SAFETY: from Box::into_raw in `watch_changes`; no callback can
        // run any more.
        drop(unsafe { Box::from_raw(self.context) });
    }
}

pub(crate) fn watch_changes() -> Result<ChangeWatcher, PlatformError> {
    let op = "subscribe to network changes";
    let (tx, rx) = unbounded_channel();
    let mut registration = Registration {
        handles: Vec::with_capacity(3),
        context: Box::into_raw(Box::new(tx)),
    };
    let context = registration.context as *const c_void;
    // On an early return, dropping `registration` cancels what was set up.
    let mut handle: HANDLE = std::ptr::null_mut();
    // SAFETY: the callback matches the API's signature; `context` outlives
    // the registration (see Registration::drop).
    check(op, unsafe {
        NotifyIpInterfaceChange(AF_UNSPEC, Some(on_interface), context, false, &mut handle)
    })?;
    registration.handles.push(handle);
    // SAFETY: as above.
    check(op, unsafe {
        NotifyUnicastIpAddressChange(AF_UNSPEC, Some(on_address), context, false, &mut handle)
    })?;
    registration.handles.push(handle);
    // SAFETY: as above.
    check(op, unsafe {
        NotifyRouteChange2(AF_UNSPEC, Some(on_route), context, false, &mut handle)
    })?;
    registration.handles.push(handle);
    Ok(ChangeWatcher {
        events: rx,
        _registration: registration,
    })
}

/// Sends `event` on the callback context.
///
/// # Safety
///
/// `context` must be the `Sender` of a live [`Registration`].
unsafe fn send(context: *const c_void, event: ChangeEvent) {
    // SAFETY: per the contract.
    let tx = unsafe { &*(context as *const Sender) };
    let _ = tx.send(event);
}

/// The event of an address notification, `None` for the initial one.
#[allow(non_upper_case_globals)] // windows-sys's names for the MIB constants
pub(super) fn address_event(
    kind: MIB_NOTIFICATION_TYPE,
    index: u32,
    addr: IpAddr,
) -> Option<ChangeEvent> {
    match kind {
        // A parameter change is e.g. DAD finishing: reported as "added",
        // like Linux re-announces an address that left the tentative state.
        MibAddInstance | MibParameterNotification => {
            Some(ChangeEvent::AddressAdded { index, addr })
        }
        MibDeleteInstance => Some(ChangeEvent::AddressRemoved { index, addr }),
        _ => None,
    }
}

unsafe extern "system" fn on_interface(
    context: *const c_void,
    row: *const MIB_IPINTERFACE_ROW,
    kind: MIB_NOTIFICATION_TYPE,
) {
    if kind == MibInitialNotification || row.is_null() {
        return;
    }
    // SAFETY: IP Helper passes a valid row and our context.
    unsafe {
        let index = (*row).InterfaceIndex;
        send(context, ChangeEvent::LinkChanged { index });
    }
}

unsafe extern "system" fn on_address(
    context: *const c_void,
    row: *const MIB_UNICASTIPADDRESS_ROW,
    kind: MIB_NOTIFICATION_TYPE,
) {
    if row.is_null() {
        return;
    }
    // SAFETY: IP Helper passes a valid row and our context.
    unsafe {
        let row = &*row;
        let event =
            ip_of_inet(&row.Address).and_then(|addr| address_event(kind, row.InterfaceIndex, addr));
        if let Some(event) = event {
            send(context, event);
        }
    }
}

unsafe extern "system" fn on_route(
    context: *const c_void,
    _row: *const MIB_IPFORWARD_ROW2,
    kind: MIB_NOTIFICATION_TYPE,
) {
    if kind == MibInitialNotification {
        return;
    }
    // SAFETY: IP Helper passes our context.
    unsafe { send(context, ChangeEvent::RouteChanged) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_events() {
        let a: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            address_event(MibAddInstance, 7, a),
            Some(ChangeEvent::AddressAdded { index: 7, addr: a })
        );
        assert_eq!(
            address_event(MibParameterNotification, 7, a),
            Some(ChangeEvent::AddressAdded { index: 7, addr: a })
        );
        assert_eq!(
            address_event(MibDeleteInstance, 7, a),
            Some(ChangeEvent::AddressRemoved { index: 7, addr: a })
        );
        assert_eq!(address_event(MibInitialNotification, 7, a), None);
    }

    /// The callbacks turn rows into events on the context's channel.
    #[test]
    fn callbacks_send_events() {
        let (tx, mut rx) = unbounded_channel();
        let context = &tx as *const Sender as *const c_void;
        let row = MIB_UNICASTIPADDRESS_ROW {
            InterfaceIndex: 3,
            Address: super::super::sys::sockaddr_inet("10.0.0.7".parse().unwrap()),
            ..Default::default()
        };
        let iface = MIB_IPINTERFACE_ROW {
            InterfaceIndex: 3,
            ..Default::default()
        };
        // SAFETY: valid rows and a live sender, as IP Helper would pass.
        unsafe {
            on_address(context, &row, MibAddInstance);
            on_interface(context, &iface, MibParameterNotification);
            on_interface(context, &iface, MibInitialNotification);
            on_route(context, std::ptr::null(), MibDeleteInstance);
        }
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                ChangeEvent::AddressAdded {
                    index: 3,
                    addr: "10.0.0.7".parse().unwrap()
                },
                ChangeEvent::LinkChanged { index: 3 },
                ChangeEvent::RouteChanged,
            ]
        );
    }
}
