"""App stand-in: resolve a name with the libc resolver (getaddrinfo), connect once, say how it went.

Prints "<pid> <outcome>" where outcome is connected, eperm, timeout, refused or error:<errno>.
"""
import os
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
sock = socket.socket(family, socket.SOCK_STREAM)
sock.settimeout(timeout)
try:
    sock.connect(addr)
    outcome = "connected"
except PermissionError:
    outcome = "eperm"
except socket.timeout:
    outcome = "timeout"
except ConnectionRefusedError:
    outcome = "refused"
except OSError as e:
    outcome = f"error:{e.errno}"
finally:
    sock.close()
print(os.getpid(), outcome, flush=True)
