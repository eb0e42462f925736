"""A stream listener standing in for a JSON socket-mode peer (unix or tcp).

It accepts every connection and keeps what arrives, in a thread of its own,
so a test can read the lines a daemon sent while the daemon runs.
"""

from __future__ import annotations

import select
import socket
import threading


class StreamPeer:
    """A unix or tcp listener: accepts and reads in a thread once `serve()` is called."""

    def __init__(self, family: int, address, rcvbuf: int | None = None) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(address)
        self.listener.listen(8)
        self.data = bytearray()
        self.connections = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def serve(self) -> StreamPeer:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        conns: list[socket.socket] = []
        while not self.stopped.is_set():
            ready, _, _ = select.select([self.listener, *conns], [], [], 0.05)
            for s in ready:
                if s is self.listener:
                    conns.append(self.listener.accept()[0])
                    with self.lock:
                        self.connections += 1
                    continue
                try:
                    chunk = s.recv(1 << 16)
                except OSError:
                    chunk = b""
                if chunk:
                    with self.lock:
                        self.data += chunk
                else:
                    conns.remove(s)
                    s.close()
        for s in conns:
            s.close()

    def lines(self) -> list[str]:
        with self.lock:
            return bytes(self.data).decode("utf-8", "replace").split("\n")[:-1]

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(5)
        self.listener.close()
