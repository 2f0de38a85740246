#!/usr/bin/env python3
"""nat-check: a tiny UDP tool to verify NAT behaviour in the antq NAT lab.

Python 3 standard library only.  Addresses are IPv4 "a.b.c.d:port" or IPv6
"[addr]:port".

  serve --bind ADDR:PORT [--bind ...] [--allow-send-to]
      Answer each datagram with "your address is IP:PORT".  Requests:
        "probe N"        -> "your address is IP:PORT N"
        "poke N"         -> "poke-ack IP:PORT N" from the same socket, and
                            "poked N by LOCAL" from every *other* bound socket
                            of the same address family to the sender's address
                            (the unsolicited third parties for filtering checks)
        "send-to A:P N"  -> (only with --allow-send-to) send "hello N" from this
                            socket to A:P, answer "sent N"
        anything else    -> "your address is IP:PORT"
  probe --from-port N SERVER1 SERVER2
      One socket, two servers: print both mapped addresses and infer the
      mapping behaviour (EIM / symmetric / blocked) and whether NAT is present.
  filter --from-port N SERVER
      Learn the mapping via SERVER, ask it to poke the mapped address from its
      other sockets and report the filtering behaviour (endpoint-independent /
      address-dependent / address-and-port-dependent).
  ports --from-port N --count K SERVER
      K sockets on ports N..N+K-1, one request each: print the mapped ports and
      whether the NAT preserves, allocates sequentially, or allocates randomly.
  send-to --via SERVER TARGET
      Ask SERVER (started with --allow-send-to) to send one datagram to TARGET
      from its own socket (used to pre-create a conntrack entry on a router).
  pcp-map --gateway IP --internal-port N [--external-port E] [--lifetime S]
          [--protocol udp|tcp] [--nonce TEXT]
      One PCP (RFC 6887) MAP request to IP:5351 for this host's IPv4 address:
      print result=SUCCESS|<code name>, external=IP:PORT and lifetime=S.
      Lifetime 0 deletes the mapping (PCP wants the nonce that created it:
      the same --nonce, a fixed default).

Output of client commands is "key=value" lines.  Exit status: 0 on an answer,
2 if nothing came back (blocked), 1 on usage errors.
"""

import argparse
import os
import select
import socket
import sys
import time


def parse_addr(text):
    """'1.2.3.4:5' or '[::1]:5' -> (family, host, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("bad address %r" % text)
        return socket.AF_INET6, host, int(port)
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        raise ValueError("bad address %r (IPv6 needs [addr]:port)" % text)
    return socket.AF_INET, host, int(port)


def fmt(addr):
    host, port = addr[0], addr[1]
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def make_socket(family, host, port):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    return s


def client_socket(family, port):
    return make_socket(family, "::" if family == socket.AF_INET6 else "0.0.0.0", port)


def nonce():
    return os.urandom(6).hex()


def same(a, b):
    return a[0] == b[0] and a[1] == b[1]


# ---------------------------------------------------------------- server
def cmd_serve(args):
    socks = []
    for b in args.bind:
        fam, host, port = parse_addr(b)
        socks.append(make_socket(fam, host, port))
    if args.verbose:
        print("serving on " + " ".join(fmt(s.getsockname()) for s in socks), file=sys.stderr)
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            try:
                data, peer = s.recvfrom(2048)
            except OSError:
                continue
            words = data.decode("utf-8", "replace").split()
            cmd = words[0] if words else ""
            tag = (" " + words[-1]) if len(words) >= 2 else ""
            if args.verbose:
                print("%s <- %s: %s" % (fmt(s.getsockname()), fmt(peer), " ".join(words)),
                      file=sys.stderr)
            try:
                if cmd == "poke" and len(words) == 2:
                    s.sendto(("poke-ack %s%s" % (fmt(peer), tag)).encode(), peer)
                    for o in socks:
                        if o is not s and o.family == s.family:
                            o.sendto(("poked %s by %s" % (words[1], fmt(o.getsockname()))).encode(),
                                     peer)
                elif cmd == "send-to" and len(words) == 3 and args.allow_send_to:
                    fam, host, port = parse_addr(words[1])
                    if fam == s.family:
                        s.sendto(("hello %s" % words[2]).encode(), (host, port))
                        s.sendto(("sent %s" % words[2]).encode(), peer)
                else:
                    s.sendto(("your address is %s%s" % (fmt(peer), tag)).encode(), peer)
            except (OSError, ValueError) as e:
                if args.verbose:
                    print("error: %s" % e, file=sys.stderr)


# ---------------------------------------------------------------- client
def request(sock, server, msg, timeout, tries):
    """Send msg to server until an answer ending in our nonce arrives."""
    n = msg.split()[-1]
    for _ in range(tries):
        sock.sendto(msg.encode(), server)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                break
            data, peer = sock.recvfrom(2048)
            words = data.decode("utf-8", "replace").split()
            if same(peer, server) and words and words[-1] == n:
                return words
    return None


def mapped_via(sock, server, timeout, tries):
    words = request(sock, server, "probe %s" % nonce(), timeout, tries)
    if not words or len(words) < 4 or words[:3] != ["your", "address", "is"]:
        return None
    fam, host, port = parse_addr(words[3])
    return (host, port)


def local_ip(family, server):
    """Source address the kernel picks towards server (no packet sent)."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.connect(server)
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def server_arg(text):
    fam, host, port = parse_addr(text)
    return fam, (host, port)


def cmd_probe(args):
    fam1, s1 = server_arg(args.server1)
    fam2, s2 = server_arg(args.server2)
    if fam1 != fam2:
        sys.exit("probe: both servers must have the same address family")
    sock = client_socket(fam1, args.from_port)
    port = sock.getsockname()[1]
    lip = local_ip(fam1, s1)
    m1 = mapped_via(sock, s1, args.timeout, args.tries)
    m2 = mapped_via(sock, s2, args.timeout, args.tries)
    print("local=%s" % fmt((lip or "?", port)))
    print("server1=%s mapped1=%s" % (fmt(s1), fmt(m1) if m1 else "none"))
    print("server2=%s mapped2=%s" % (fmt(s2), fmt(m2) if m2 else "none"))
    if m1 is None and m2 is None:
        print("mapping=blocked")
        return 2
    if m1 is None or m2 is None:
        print("mapping=partial")
        return 2
    nat = not (m1[0] == lip and m1[1] == port)
    print("nat=%s" % ("yes" if nat else "no"))
    print("port_preserved=%s" % ("yes" if m1[1] == port else "no"))
    print("mapping=%s" % ("EIM" if m1 == m2 else "symmetric"))
    return 0


def cmd_filter(args):
    fam, server = server_arg(args.server)
    sock = client_socket(fam, args.from_port)
    m = mapped_via(sock, server, args.timeout, args.tries)
    if m is None:
        print("mapped=none")
        print("filtering=blocked")
        return 2
    print("mapped=%s" % fmt(m))
    got_ack = False
    from_port = from_addr = False
    pokers = []
    for _ in range(args.tries):
        n = nonce()
        sock.sendto(("poke %s" % n).encode(), server)
        deadline = time.monotonic() + args.wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                break
            data, peer = sock.recvfrom(2048)
            words = data.decode("utf-8", "replace").split()
            if same(peer, server) and words[:1] == ["poke-ack"] and words[-1] == n:
                got_ack = True
            elif words[:1] == ["poked"] and words[1:2] == [n]:
                pokers.append(fmt(peer))
                if peer[0] == server[0]:
                    from_port = True
                else:
                    from_addr = True
        if got_ack:
            break
    print("poked_by=%s" % (",".join(pokers) or "nobody"))
    if not got_ack:
        print("filtering=unknown")
        return 2
    if from_addr and from_port:
        kind = "endpoint-independent"
    elif from_port:
        kind = "address-dependent"
    elif from_addr:
        kind = "odd(port-only)"
    else:
        kind = "address-and-port-dependent"
    print("filtering=%s" % kind)
    return 0


def cmd_ports(args):
    fam, server = server_arg(args.server)
    ports, socks = [], []
    for i in range(args.count):
        s = client_socket(fam, args.from_port + i)
        socks.append(s)
        m = mapped_via(s, server, args.timeout, args.tries)
        ports.append(m[1] if m else None)
    print("local_ports=%s" % ",".join(str(args.from_port + i) for i in range(args.count)))
    print("mapped_ports=%s" % ",".join(str(p) for p in ports))
    if any(p is None for p in ports):
        print("allocation=blocked")
        return 2
    if all(p == args.from_port + i for i, p in enumerate(ports)):
        alloc = "preserved"
    elif all(b - a == 1 for a, b in zip(ports, ports[1:])):
        alloc = "sequential"
    else:
        alloc = "random"
    print("range=%d-%d" % (min(ports), max(ports)))
    print("allocation=%s" % alloc)
    return 0


def cmd_send_to(args):
    fam, server = server_arg(args.via)
    sock = client_socket(fam, 0)
    n = nonce()
    words = request(sock, server, "send-to %s %s" % (args.target, n), args.timeout, args.tries)
    print("sent=%s" % ("yes" if words and words[0] == "sent" else "no"))
    return 0 if words else 2


PCP_RESULTS = {
    0: "SUCCESS", 1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED", 3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE", 5: "UNSUPP_OPTION", 6: "MALFORMED_OPTION", 7: "NETWORK_FAILURE",
    8: "NO_RESOURCES", 9: "UNSUPP_PROTOCOL", 10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL", 12: "ADDRESS_MISMATCH", 13: "EXCESSIVE_REMOTE_PEERS",
}


def cmd_pcp_map(args):
    proto = {"udp": 17, "tcp": 6}[args.protocol]
    nonce_bytes = args.nonce.encode()[:12].ljust(12, b"\0")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((args.gateway, 5351))
    client = sock.getsockname()[0]

    def mapped(ip):  # IPv4-mapped IPv6 address, as PCP carries addresses
        return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(ip)

    # common header: version 2, opcode MAP (1), lifetime, client address
    req = bytes([2, 1, 0, 0]) + args.lifetime.to_bytes(4, "big") + mapped(client)
    # MAP: nonce, protocol, internal port, suggested external port and address
    req += nonce_bytes + bytes([proto, 0, 0, 0]) + args.internal_port.to_bytes(2, "big")
    req += args.external_port.to_bytes(2, "big") + mapped("0.0.0.0")
    for _ in range(args.tries):
        sock.send(req)
        r, _, _ = select.select([sock], [], [], args.timeout)
        if not r:
            continue
        try:
            data = sock.recv(1100)
        except OSError as e:
            print("result=error error=%s" % e)
            return 2
        if len(data) < 60 or data[0] != 2 or data[1] != 0x81 or data[24:36] != nonce_bytes:
            continue
        code = data[3]
        lifetime = int.from_bytes(data[4:8], "big")
        port = int.from_bytes(data[42:44], "big")
        ip = socket.inet_ntoa(data[56:60])
        print("result=%s" % PCP_RESULTS.get(code, code))
        print("external=%s:%d" % (ip, port))
        print("lifetime=%d" % lifetime)
        return 0 if code == 0 else 3
    print("result=no-answer")
    return 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="UDP echo server")
    p.add_argument("--bind", action="append", required=True, metavar="ADDR:PORT")
    p.add_argument("--allow-send-to", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_serve)

    def common(p):
        p.add_argument("--timeout", type=float, default=0.7, help="seconds per try")
        p.add_argument("--tries", type=int, default=3)

    p = sub.add_parser("probe", help="mapping behaviour")
    p.add_argument("--from-port", type=int, default=0)
    p.add_argument("server1")
    p.add_argument("server2")
    common(p)
    p.set_defaults(fn=cmd_probe)
    p = sub.add_parser("filter", help="filtering behaviour")
    p.add_argument("--from-port", type=int, default=0)
    p.add_argument("--wait", type=float, default=1.0, help="seconds to wait for pokes")
    p.add_argument("server")
    common(p)
    p.set_defaults(fn=cmd_filter)
    p = sub.add_parser("ports", help="port allocation")
    p.add_argument("--from-port", type=int, required=True)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("server")
    common(p)
    p.set_defaults(fn=cmd_ports)
    p = sub.add_parser("send-to", help="ask a server to send to TARGET")
    p.add_argument("--via", required=True, metavar="SERVER")
    p.add_argument("target")
    common(p)
    p.set_defaults(fn=cmd_send_to)
    p = sub.add_parser("pcp-map", help="one PCP MAP request")
    p.add_argument("--gateway", required=True)
    p.add_argument("--internal-port", type=int, required=True)
    p.add_argument("--external-port", type=int, default=0)
    p.add_argument("--lifetime", type=int, default=60)
    p.add_argument("--protocol", choices=("udp", "tcp"), default="udp")
    p.add_argument("--nonce", default="antq-lab-pcp")
    common(p)
    p.set_defaults(fn=cmd_pcp_map)
    args = ap.parse_args()
    try:
        return args.fn(args) or 0
    except ValueError as e:
        print("nat-check: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
