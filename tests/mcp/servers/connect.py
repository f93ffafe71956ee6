"""Pipe stdin/stdout to a unix socket (lets the SDK's stdio client reach an in-process relay)."""

import socket
import sys
import threading

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])


def up() -> None:
    for chunk in iter(lambda: sys.stdin.buffer.read1(65536), b""):
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)


threading.Thread(target=up, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
