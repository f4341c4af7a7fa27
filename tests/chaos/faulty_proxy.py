"""A small TCP proxy for fault injection between the pooler and a server: it can delay every chunk, drop (reset)
every open connection, refuse new ones for a while, and lose everything sent while the connections stay up. Threads, no dependencies."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time


class FaultyProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.max_delay = 0.0  # seconds, random per chunk
        self.refusing = False
        self.blackhole = False  # forward nothing (chunks are lost) while the connections stay up
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                self._reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.blackhole:
                    continue
                if self.max_delay > 0:
                    time.sleep(random.uniform(0, self.max_delay))
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        """Ends `sock` with a reset. shutdown() first: a plain close() leaves a pump thread blocked in recv() on it
        (Linux keeps the socket alive until that call returns), and the peer would see nothing at all."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def drop_all(self) -> int:
        """Resets every open connection (both sides), as a dead network path would end them."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            self._reset(client)
            self._reset(server)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.drop_all()
