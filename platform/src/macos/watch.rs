//! Change events from `SCDynamicStore` notifications.
//!
//! A thread of our own creates the store session, schedules its run-loop
//! source and runs its CFRunLoop in half-second slices, ending when the
//! watcher (the channel's receiver) is gone. On each notification it reads
//! the interfaces again and reports the differences to the previous read
//! (see [`Snapshot::changes`]). If the session dies (its run-loop source
//! goes away), the thread ends and the watcher reports `None`.

use std::sync::mpsc;
use std::time::Duration;

use core_foundation::array::CFArray;
use core_foundation::runloop::{kCFRunLoopDefaultMode, CFRunLoop, CFRunLoopRunResult};
use core_foundation::string::CFString;
use system_configuration::dynamic_store::{
    SCDynamicStore, SCDynamicStoreBuilder, SCDynamicStoreCallBackContext,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::links::list;
use super::logic::{parse_key, Snapshot, KEYS, KEY_PATTERNS};
use crate::{ChangeEvent, PlatformError};

/// How long the thread runs its run loop between checks for a dropped
/// watcher.
const SLICE: Duration = Duration::from_millis(500);

pub(crate) struct ChangeWatcher {
    events: UnboundedReceiver<ChangeEvent>,
}

impl ChangeWatcher {
    pub(crate) async fn next(&mut self) -> Option<ChangeEvent> {
        self.events.recv().await
    }
}

pub(crate) fn watch_changes() -> Result<ChangeWatcher, PlatformError> {
    let op = "subscribe to network changes (SCDynamicStore)";
    let (tx, rx) = unbounded_channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("antq-netwatch".into())
        .spawn(move || run(tx, ready_tx))
        .map_err(|source| PlatformError::Io { op, source })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(ChangeWatcher { events: rx }),
        Ok(Err(what)) => Err(PlatformError::Io {
            op,
            source: std::io::Error::other(what),
        }),
        Err(_) => Err(PlatformError::Io {
            op,
            source: std::io::Error::other("watcher thread ended during setup"),
        }),
    }
}

/// State of the notification callback.
struct Watch {
    events: UnboundedSender<ChangeEvent>,
    last: Snapshot,
}

fn snapshot() -> Option<Snapshot> {
    list().ok().map(|ifaces| Snapshot::of(&ifaces))
}

/// The watcher thread: sets up the store, reports the outcome on `ready`,
/// then runs the run loop until the receiver is dropped.
fn run(events: UnboundedSender<ChangeEvent>, ready: mpsc::SyncSender<Result<(), &'static str>>) {
    let context = SCDynamicStoreCallBackContext {
        callout: on_change,
        info: Watch {
            events: events.clone(),
            last: snapshot().unwrap_or_default(),
        },
    };
    let Some(store) = SCDynamicStoreBuilder::new("antq")
        .callback_context(context)
        .build()
    else {
        let _ = ready.send(Err("SCDynamicStoreCreate failed"));
        return;
    };
    let keys: Vec<CFString> = KEYS.iter().map(|k| CFString::new(k)).collect();
    let patterns: Vec<CFString> = KEY_PATTERNS.iter().map(|p| CFString::new(p)).collect();
    if !store.set_notification_keys(
        &CFArray::from_CFTypes(&keys),
        &CFArray::from_CFTypes(&patterns),
    ) {
        let _ = ready.send(Err("SCDynamicStoreSetNotificationKeys failed"));
        return;
    }
    let Some(source) = store.create_run_loop_source() else {
        let _ = ready.send(Err("SCDynamicStoreCreateRunLoopSource failed"));
        return;
    };
    let run_loop = CFRunLoop::get_current();
    // SAFETY: kCFRunLoopDefaultMode is an immutable CFString constant.
    let mode = unsafe { kCFRunLoopDefaultMode };
    run_loop.add_source(&source, mode);
    let _ = ready.send(Ok(()));
    while !events.is_closed() {
        // `Finished`: no source left (the store's session was invalidated).
        // End the subscription; the caller sees `None` and may start anew.
        if CFRunLoop::run_in_mode(mode, SLICE, false) == CFRunLoopRunResult::Finished {
            break;
        }
    }
    run_loop.remove_source(&source, mode);
}

/// The notification callback, on the watcher thread.
fn on_change(_store: SCDynamicStore, changed: CFArray<CFString>, watch: &mut Watch) {
    let names: Vec<String> = changed.iter().map(|k| k.to_string()).collect();
    let keys: Vec<_> = names.iter().map(|k| parse_key(k)).collect();
    let events = match snapshot() {
        Some(now) => {
            let events = watch.last.changes(&now, &keys);
            watch.last = now;
            events
        }
        // Cannot tell what changed: ask the caller to re-read everything.
        None => vec![ChangeEvent::LinkChanged { index: 0 }],
    };
    for event in events {
        let _ = watch.events.send(event);
    }
}
