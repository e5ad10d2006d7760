#!/usr/bin/env python3
"""The classic two-person chat program, for udpchat's peer-to-peer tests.

It is the classroom program with two changes for testing: the addresses are
arguments (loopback in the tests), and it prints one "* ready" line once its
socket is bound, so that a test can wait for it.

    classic_peer.py NAME LISTEN_PORT PEER_PORT

A receiver thread binds 127.0.0.1:LISTEN_PORT and prints every datagram it
gets as one line; the main thread sends each line of standard input as
"NAME:line" (no space) to 127.0.0.1:PEER_PORT from a second socket, and
quits after sending "bye" or "exit", or at the end of its input.
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
        print(data.decode("utf-8", "replace").rstrip("\r\n"), flush=True)


def main():
    name, listen_port, peer_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", listen_port))
    threading.Thread(target=receive, args=(rx,), daemon=True).start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    print(f"* ready {name} on 127.0.0.1:{listen_port}", flush=True)
    for _, line in zip(range(MAX_LINES), sys.stdin):
        line = line.rstrip("\n")
        tx.sendto(f"{name}:{line}".encode(), ("127.0.0.1", peer_port))
        if line in ("bye", "exit"):
            break
    rx.close()


if __name__ == "__main__":
    main()
