"""App stand-in speaking HTTPS through OpenSSL: one POST with credentials in the query and in
the Authorization header (the probe must never pass either on). Prints "<pid> <status line>".
"""
import os
import socket
import ssl
import sys

host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
body = b'{"model":"gpt-x"}'
request = (
    b"POST /v1/chat/completions?key=SECRET-QUERY HTTP/1.1\r\n"
    b"Host: " + host.encode() + b"\r\n"
    b"Authorization: Bearer sk-SECRET-HEADER\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
)
with socket.create_connection((host, port), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request)
        status = tls.recv(4096).split(b"\r\n", 1)[0].decode()
print(os.getpid(), status.replace(" ", "_"), flush=True)
