"""Listener stand-in for the provider and for the sidecar.

usage: server.py ADDR:PORT... [--forward V4ADDR:PORT V6ADDR:PORT]
Accepts and closes connections. With --forward (the sidecar), each accepted connection is
followed by one connection to the provider of the same family, as Envoy would open upstream.
Prints "ready" once every socket listens.
"""
import selectors
import socket
import sys


def parse(spec):
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)


args = sys.argv[1:]
forward = {}
if "--forward" in args:
    i = args.index("--forward")
    forward = {socket.AF_INET: parse(args[i + 1]), socket.AF_INET6: parse(args[i + 2])}
    args = args[:i]

sel = selectors.DefaultSelector()
for spec in args:
    host, port = parse(spec)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)

while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
        target = forward.get(key.fileobj.family)
        if target:
            up = socket.socket(key.fileobj.family, socket.SOCK_STREAM)
            up.settimeout(2)
            try:
                up.connect(target)
            except OSError:
                pass
            up.close()
