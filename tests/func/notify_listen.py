#!/usr/bin/env python3
"""notify_listen.py: stand in for systemd's notification socket in tests.

    notify_listen.py NAME OUT

Binds a datagram socket at NAME ('@' = abstract, as in $NOTIFY_SOCKET),
prints "listening" on stdout once bound, then appends each datagram it
receives to OUT as one line: milliseconds since it started, a space, and
the message with its newlines written as '|'.  Runs until killed."""
import socket
import sys
import time

name, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
t0 = time.monotonic()
print("listening", flush=True)
with open(out, "a", buffering=1) as f:
    while True:
        msg = s.recv(4096).decode("utf-8", "replace")
        f.write("%d %s\n" % ((time.monotonic() - t0) * 1000, msg.replace("\n", "|")))
