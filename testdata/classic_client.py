#!/usr/bin/env python3
"""The classroom chat client, for udpchat's plain-text interop tests.

It is the classic program with two changes for testing: the relay's address
is an argument (never the limited broadcast address), and it prints one
"* ready" line once its socket is bound, so that a test can wait for it.

    classic_client.py USERNAME RELAY_HOST PORT

It binds 0.0.0.0:PORT with SO_REUSEPORT and SO_BROADCAST (so that several
clients on one host share the port and all hear the relay's broadcasts), a
receiver thread prints every datagram it gets as one line, and the main
thread sends each line of standard input to RELAY_HOST:PORT as
"USERNAME: line". It quits after sending "bye", or at the end of input.
"""

import socket
import sys
import threading

MAX_LINES = 10000  # bounded: a test never sends more


def receive(sock):
    while True:
        try:
            data, _ = sock.recvfrom(65535)
        except OSError:
            return
        text = data.decode("utf-8", "replace").rstrip("\r\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: classic_client.py USERNAME RELAY_HOST PORT\n")
        return 2
    username, relay_host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if relay_host in ("<broadcast>", "255.255.255.255"):
        sys.stderr.write("classic_client.py: refusing the limited broadcast address\n")
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("0.0.0.0", port))
    threading.Thread(target=receive, args=(sock,), daemon=True).start()
    sys.stdout.write("* ready %s on 0.0.0.0:%d\n" % (username, port))
    sys.stdout.flush()
    for _ in range(MAX_LINES):
        line = sys.stdin.readline()
        if not line:
            break
        message = line.rstrip("\r\n")
        sock.sendto(("%s: %s" % (username, message)).encode("utf-8"), (relay_host, port))
        if message == "bye":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
