//! Two-peer scenarios of [`PeerState`](super::PeerState) over the simulated
//! network (see `sim_world`): minutes of simulated time in milliseconds.

use std::time::Duration;

use super::sim_world::{ip, World, LINK_DETECT, RECONNECT};
use crate::nat::sim::NatType;

fn both(w: &World, path: &str) -> bool {
    w.path(0) == path && w.path(1) == path
}

#[test]
fn home_and_full_cone_connect_relayed_at_once_then_go_direct() {
    let mut w = World::new(NatType::Home, NatType::FullCone, 1);
    let relayed = w.run_until(Duration::from_secs(2), |w| {
        w.path(0) != "none" && w.path(1) != "none"
    });
    let relayed = relayed.expect("connected");
    assert!(
        relayed < Duration::from_millis(300),
        "first path after {relayed:?}"
    );
    let direct = w.run_until(Duration::from_secs(5), |w| both(w, "direct"));
    assert!(direct.is_some(), "direct within 5 s");
    // And it stays.
    w.run_until(Duration::from_secs(20), |_| false);
    assert!(both(&w, "direct"));
    assert!(w.peers[0].state.relay().is_some(), "relay kept as backup");
}

#[test]
fn symmetric_pair_stays_relayed_and_punches_no_faster_than_the_quiet_time() {
    let mut w = World::new(NatType::Symmetric, NatType::Symmetric, 1);
    w.run_until(Duration::from_secs(120), |_| false);
    assert!(both(&w, "relay"));
    let punches = w.peers[0].punches;
    // One at once, then at most one per PUNCH_QUIET (plus the session's
    // own duration).
    assert!((1..=4).contains(&punches), "{punches} punches in 120 s");
    eprintln!("symmetric pair: {punches} punches in 120 s");
}

#[test]
fn relay_fails_over_to_the_second_bootstrap() {
    let mut w = World::new(NatType::Symmetric, NatType::Home, 2);
    // b is idle: it sends on the relay every 3 s and finds the dead
    // bootstrap's link dead late. a's request through the other bootstrap
    // tells it its relay is gone (waiting for its own detection took 7.4 s
    // in a CI run of the netns test).
    w.relay_send_every[1] = 15;
    w.link_detect[1] = Duration::from_secs(6);
    assert!(w
        .run_until(Duration::from_secs(2), |w| both(w, "relay"))
        .is_some());
    let first = w.relay_boot(0).expect("relayed");
    w.kill(first);
    let took = w.run_until(Duration::from_secs(10), |w| {
        both(w, "relay") && w.relay_boot(0).is_some_and(|b| b != first)
    });
    let took = took.expect("relay through the other bootstrap");
    // The link is found dead after LINK_DETECT; the new channel needs one
    // round of requests.
    assert!(
        took < LINK_DETECT + Duration::from_millis(800),
        "failover took {took:?}"
    );
    eprintln!("relay failover: {took:?}");
}

#[test]
fn bootstrap_restart_brings_the_relay_back() {
    let mut w = World::new(NatType::Symmetric, NatType::Symmetric, 1);
    assert!(w
        .run_until(Duration::from_secs(2), |w| both(w, "relay"))
        .is_some());
    w.kill(0);
    w.run_until(Duration::from_secs(3), |_| false);
    w.restart(0);
    let back = w.run_until(Duration::from_secs(10), |w| both(w, "relay"));
    let back = back.expect("relay back");
    assert!(
        back < RECONNECT + Duration::from_secs(2),
        "relay back after {back:?}"
    );
}

#[test]
fn renumbered_nat_loses_the_direct_path_and_punches_a_new_one() {
    let mut w = World::new(NatType::Home, NatType::FullCone, 1);
    assert!(w
        .run_until(Duration::from_secs(5), |w| both(w, "direct"))
        .is_some());
    w.run_until(Duration::from_secs(2), |_| false);
    let host = w.peers[0].host;
    w.sim.renumber(host, ip("203.0.113.99"));
    // The direct path dies and traffic takes the relay...
    let fallback = w.run_until(Duration::from_secs(5), |w| w.path(0) == "relay");
    let fallback = fallback.expect("relay carries after the direct path died");
    assert!(
        fallback < Duration::from_secs(2),
        "stall noticed after {fallback:?}"
    );
    // ...then the new address is announced and punched.
    let again = w.run_until(Duration::from_secs(10), |w| both(w, "direct"));
    let again = again.expect("direct again after renumbering");
    // The follower's direct connection was closed by the leader, not
    // dropped by itself: its last punch (lingering for 7 s from its start)
    // must not make it ignore the new one (it did: 30 s more on the relay).
    assert!(
        again < Duration::from_secs(3),
        "direct again {again:?} after the relay took over"
    );
    eprintln!("renumbered: relay after {fallback:?}, direct again {again:?} later");
    let addr = w.peers[1].state.punch_candidates(None);
    assert!(addr.iter().any(|c| c.addr.ip() == ip("203.0.113.99")));
}
