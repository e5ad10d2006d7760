#!/usr/bin/env python3
"""The classroom chat relay, for udpchat's plain-text interop tests.

It is the classic program with the broadcast address as an argument (the
tests pass the loopback broadcast address 127.255.255.255, never the
limited broadcast address) and a "* ready" line once its socket is bound.

    classic_relay.py BIND_HOST PORT BROADCAST_HOST

It binds BIND_HOST:PORT with SO_REUSEPORT (so that it can share the port
with clients on the same host, bound to 0.0.0.0:PORT) and SO_BROADCAST, and
sends every datagram it receives, unchanged, to BROADCAST_HOST:PORT. It
stops by itself after MAX_DATAGRAMS datagrams or IDLE seconds of silence.
"""

import socket
import sys

MAX_DATAGRAMS = 10000
IDLE = 30.0


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: classic_relay.py BIND_HOST PORT BROADCAST_HOST\n")
        return 2
    host, port, broadcast = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if broadcast in ("<broadcast>", "255.255.255.255"):
        sys.stderr.write("classic_relay.py: refusing the limited broadcast address\n")
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((host, port))
    sock.settimeout(IDLE)
    sys.stdout.write("* ready %s:%d -> %s:%d\n" % (host, port, broadcast, port))
    sys.stdout.flush()
    for _ in range(MAX_DATAGRAMS):
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        sock.sendto(data, (broadcast, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
