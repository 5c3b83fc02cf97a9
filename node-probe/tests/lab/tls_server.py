"""TLS listener stand-in for the provider: reads one request, answers 200, closes.

usage: tls_server.py ADDR:PORT CERT KEY — prints "ready" once listening.
"""
import socket
import ssl
import sys

host, _, port = sys.argv[1].rpartition(":")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, int(port)))
srv.listen(16)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
    except OSError:
        pass
