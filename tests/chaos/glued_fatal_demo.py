"""How psycopg reports a FATAL that arrives in the same read as the previous result (docs/chaos.md): a fake server
answers an insert inside a transaction with its result, ReadyForQuery('T') and a FATAL 57P01 in one write, then
closes, as a PostgreSQL backend terminated right after a result does. The next statement (`commit`) fails with
OperationalError "consuming input failed: server closed the connection unexpectedly" and no SQLSTATE, although the
FATAL reached the client: psycopg sends before it parses what libpq already buffered.

Run: python3 tests/chaos/glued_fatal_demo.py  (prints the error the client saw; not a test)."""

import socket
import struct
import threading

import psycopg


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def fatal(code: bytes, text: bytes) -> bytes:
    return message(b"E", b"SFATAL\0VFATAL\0C" + code + b"\0M" + text + b"\0\0")


def serve(listener: socket.socket) -> None:
    conn, _ = listener.accept()

    def read_startup() -> bytes:
        (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        return conn.recv(length - 4, socket.MSG_WAITALL)

    def read_message() -> None:
        header = conn.recv(5, socket.MSG_WAITALL)
        conn.recv(struct.unpack("!I", header[1:])[0] - 4, socket.MSG_WAITALL)

    packet = read_startup()
    if struct.unpack("!I", packet[:4])[0] == 80877103:  # SSLRequest
        conn.sendall(b"N")
        read_startup()
    conn.sendall(message(b"R", struct.pack("!I", 0)) + message(b"S", b"server_version\x0015.4\x00")
                 + message(b"S", b"client_encoding\x00UTF8\x00") + message(b"S", b"standard_conforming_strings\x00on\x00")
                 + message(b"K", struct.pack("!II", 1, 2)) + message(b"Z", b"I"))
    read_message()  # begin
    conn.sendall(message(b"C", b"BEGIN\0") + message(b"Z", b"T"))
    read_message()  # insert
    conn.sendall(message(b"C", b"INSERT 0 1\0") + message(b"Z", b"T")
                 + fatal(b"57P01", b"terminating connection due to administrator command"))
    conn.close()


def main() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    port = listener.getsockname()[1]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=x dbname=x", autocommit=True) as conn:
        conn.execute("begin")
        conn.execute("insert into t values (1)")
        try:
            conn.execute("commit")
            print("commit succeeded")
        except psycopg.Error as error:
            print(f"{type(error).__name__} (SQLSTATE {error.sqlstate}): {str(error).splitlines()[0]}")


if __name__ == "__main__":
    main()
