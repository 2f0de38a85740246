//! The routers on the way to an address, traceroute-style: UDP probes with
//! TTL 1, 2, ... and the ICMP "time exceeded" errors they cause, read from
//! the socket's error queue (`IP_RECVERR` / `IPV6_RECVERR`, `MSG_ERRQUEUE`).
//! No raw socket, so no privilege is needed.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::{Hop, PlatformError};

/// First destination port of the probes (the traceroute convention); probe
/// `ttl` goes to `BASE_PORT + ttl - 1`, which tells its error apart.
const BASE_PORT: u16 = 33434;

const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP6_TIME_EXCEEDED: u8 = 3;
const ICMP6_DEST_UNREACH: u8 = 1;

pub(crate) fn trace_hops(
    dst: IpAddr,
    max_ttl: u8,
    wait: Duration,
    mark: u32,
) -> Result<Vec<Hop>, PlatformError> {
    let io_err = |op| move |source| PlatformError::Io { op, source };
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).map_err(io_err("trace: bind"))?;
    socket
        .set_nonblocking(true)
        .map_err(io_err("trace: nonblocking"))?;
    if mark != 0 {
        super::set_socket_mark(socket2::SockRef::from(&socket), mark)?;
    }
    let v6 = dst.is_ipv6();
    let (level, recverr, ttl_opt) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVERR,
            libc::IPV6_UNICAST_HOPS,
        )
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR, libc::IP_TTL)
    };
    set_int(&socket, level, recverr, 1).map_err(io_err("trace: IP_RECVERR"))?;
    let mut hops = vec![Hop::Silent; usize::from(max_ttl)];
    // All probes at once, then one wait for their errors: the whole trace
    // takes `wait`, not `max_ttl` times it.
    let record = |hops: &mut Vec<Hop>| {
        while let Some((port, hop)) = read_error(&socket, v6) {
            let index = usize::from(port.wrapping_sub(BASE_PORT));
            if let Some(slot) = hops.get_mut(index) {
                *slot = hop;
            }
        }
    };
    for ttl in 1..=max_ttl {
        set_int(&socket, level, ttl_opt, i32::from(ttl)).map_err(io_err("trace: TTL"))?;
        let to = SocketAddr::new(dst, BASE_PORT + u16::from(ttl) - 1);
        let mut tries = 0;
        // An error an earlier probe caused fails the next send (the
        // socket's pending error); it is in the queue too: read it, resend.
        while let Err(error) = socket.send_to(&[ttl], to) {
            tries += 1;
            if error.raw_os_error().is_none() || tries > 3 {
                return Err(PlatformError::Io {
                    op: "trace: send",
                    source: error,
                });
            }
            record(&mut hops);
        }
    }
    let deadline = Instant::now() + wait;
    loop {
        record(&mut hops);
        // Routers are nearer than the destination: once it answered,
        // whatever they had to say has arrived.
        let done = hops.contains(&Hop::Destination);
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        poll_error(&socket, left);
    }
    if let Some(d) = hops.iter().position(|h| *h == Hop::Destination) {
        hops.truncate(d + 1);
    }
    Ok(hops)
}

fn set_int(socket: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until the error queue has something or `timeout` passes.
fn poll_error(socket: &UdpSocket, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        // POLLERR is always reported; nothing else is asked for.
        events: 0,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// One entry of the error queue: the probe's destination port and what the
/// ICMP error says about its hop. `None` when the queue is empty.
fn read_error(socket: &UdpSocket, v6: bool) -> Option<(u16, Hop)> {
    loop {
        // SAFETY: plain C structs, zeroed is a valid value for each.
        let mut name: libc::sockaddr_storage = unsafe { zeroed() };
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return None;
        }
        let port = sockaddr_port(&name)?;
        // SAFETY: the kernel filled `msg_controllen` bytes of control
        // messages; CMSG_* walk them within that length.
        let hop = unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            let mut hop = None;
            while !cmsg.is_null() {
                let c = &*cmsg;
                let ours = if v6 {
                    c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR
                } else {
                    c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR
                };
                if ours {
                    let ee = libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err;
                    hop = classify(&*ee, ee.add(1).cast(), v6);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            hop
        };
        if let Some(hop) = hop {
            return Some((port, hop));
        }
        // Some other error (e.g. a local one): skip it.
    }
}

/// # Safety
/// `offender` points at the sockaddr the kernel put right after `ee`.
unsafe fn classify(ee: &libc::sock_extended_err, offender: *const u8, v6: bool) -> Option<Hop> {
    let (origin, exceeded, unreach) = if v6 {
        (
            libc::SO_EE_ORIGIN_ICMP6,
            ICMP6_TIME_EXCEEDED,
            ICMP6_DEST_UNREACH,
        )
    } else {
        (
            libc::SO_EE_ORIGIN_ICMP,
            ICMP_TIME_EXCEEDED,
            ICMP_DEST_UNREACH,
        )
    };
    if ee.ee_origin != origin {
        return None;
    }
    if ee.ee_type == unreach {
        return Some(Hop::Destination);
    }
    if ee.ee_type != exceeded {
        return None;
    }
    let ip = if v6 {
        let sa = &*(offender as *const libc::sockaddr_in6);
        (sa.sin6_family == libc::AF_INET6 as libc::sa_family_t)
            .then(|| IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
    } else {
        let sa = &*(offender as *const libc::sockaddr_in);
        (sa.sin_family == libc::AF_INET as libc::sa_family_t)
            .then(|| IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
    };
    Some(ip.map_or(Hop::Silent, Hop::Router))
}

fn sockaddr_port(name: &libc::sockaddr_storage) -> Option<u16> {
    let ptr = (name as *const libc::sockaddr_storage).cast::<u8>();
    // SAFETY: sockaddr_storage is large and aligned enough for both.
    unsafe {
        match i32::from(name.ss_family) {
            libc::AF_INET => Some(u16::from_be((*(ptr as *const libc::sockaddr_in)).sin_port)),
            libc::AF_INET6 => Some(u16::from_be(
                (*(ptr as *const libc::sockaddr_in6)).sin6_port,
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_the_destination_at_hop_one() {
        let hops = trace_hops(Ipv4Addr::LOCALHOST.into(), 3, Duration::from_secs(2), 0).unwrap();
        assert_eq!(hops, vec![Hop::Destination]);
        let hops = trace_hops(Ipv6Addr::LOCALHOST.into(), 2, Duration::from_secs(2), 0).unwrap();
        assert_eq!(hops, vec![Hop::Destination]);
    }
}
