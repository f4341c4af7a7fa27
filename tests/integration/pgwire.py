"""A small raw PostgreSQL v3 protocol client for tests that need exact bytes: bad input, SSL/GSSENC negotiation,
abrupt disconnects, and SQLSTATEs of errors sent during connection start-up (which libpq does not expose).

Every read has a socket timeout, so a pooler that stays silent fails the test instead of hanging it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF or reset)."""


class PgError(Exception):
    """An ErrorResponse; `fields` maps field codes ('S', 'V', 'C', 'M', ...) to values."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__(f"{fields.get('V') or fields.get('S')} {fields.get('C')}: {fields.get('M')}")

    @property
    def sqlstate(self) -> str | None:
        return self.fields.get("C")

    @property
    def severity(self) -> str | None:
        return self.fields.get("V") or self.fields.get("S")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


def parse_error_fields(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    i = 0
    while i < len(payload) and payload[i] != 0:
        code = chr(payload[i])
        end = payload.index(b"\x00", i + 1)
        fields[code] = payload[i + 1 : end].decode("utf-8", "replace")
        i = end + 1
    return fields


def startup_packet(user: str | None, database: str | None = None, protocol: int = PROTOCOL_3_0, **params: str) -> bytes:
    body = struct.pack("!I", protocol)
    items = {}
    if user is not None:
        items["user"] = user
    if database is not None:
        items["database"] = database
    items.update(params)
    for k, v in items.items():
        body += k.encode() + b"\x00" + str(v).encode() + b"\x00"
    body += b"\x00"
    return struct.pack("!I", len(body) + 4) + body


def message(type_: bytes, payload: bytes) -> bytes:
    return type_ + struct.pack("!I", len(payload) + 4) + payload


def query_message(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\x00")


class RawConn:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.parameters: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None
        self.notices: list[dict[str, str]] = []
        self.txn_status: str | None = None

    # -- bytes -------------------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise ConnectionClosed(str(e)) from e
            if not chunk:
                raise ConnectionClosed("EOF")
            self.buf += chunk

    def read_bytes(self, n: int) -> bytes:
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self) -> tuple[bytes, bytes]:
        header = self.read_bytes(5)
        type_ = header[:1]
        (length,) = struct.unpack("!I", header[1:])
        if length < 4 or length > 1 << 30:
            raise AssertionError(f"bad message length {length} for type {type_!r}")
        return type_, self.read_bytes(length - 4)

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Reads until EOF; returns True when the peer closed within the timeout (data read meanwhile is dropped)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    return True
                if not chunk:
                    return True
            return False
        finally:
            self.sock.settimeout(10.0)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def close_abruptly(self) -> None:
        """Closes with RST and no Terminate message, like a crashed client."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- negotiation -------------------------------------------------------------------------------------------
    def ssl_request(self) -> bytes:
        self.send(struct.pack("!II", 8, SSL_REQUEST_CODE))
        return self.read_bytes(1)

    def gssenc_request(self) -> bytes:
        self.send(struct.pack("!II", 8, GSSENC_REQUEST_CODE))
        return self.read_bytes(1)

    # -- start-up and authentication ---------------------------------------------------------------------------
    def startup(self, user: str, database: str, password: str | None = None, **params: str) -> None:
        """Sends a StartupMessage and completes authentication; raises PgError on an ErrorResponse."""
        self.send(startup_packet(user, database, **params))
        self.authenticate(user, password)

    def authenticate(self, user: str, password: str | None, sasl_initial_without_data: bool = False) -> None:
        """`sasl_initial_without_data`: SCRAM's SASLInitialResponse carries no data (length -1); the
        client-first-message then answers the server's empty challenge."""
        scram = None
        first_pending = False
        while True:
            t, p = self.read_message()
            if t == b"E":
                raise PgError(parse_error_fields(p))
            if t == b"N":
                self.notices.append(parse_error_fields(p))
                continue
            if t != b"R":
                raise AssertionError(f"unexpected message {t!r} during authentication")
            (code,) = struct.unpack("!I", p[:4])
            if code == 0:
                break
            if password is None:
                raise AssertionError(f"server asked for a password (auth code {code}) but none was given")
            if code == 3:  # cleartext
                self.send(message(b"p", password.encode() + b"\x00"))
            elif code == 5:  # md5
                salt = p[4:8]
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + salt).hexdigest()
                self.send(message(b"p", b"md5" + outer.encode() + b"\x00"))
            elif code == 10:  # SASL
                mechanisms = [m.decode() for m in p[4:].split(b"\x00") if m]
                if "SCRAM-SHA-256" not in mechanisms:
                    raise AssertionError(f"no SCRAM-SHA-256 in {mechanisms}")
                scram = _Scram(password)
                first = scram.client_first()
                if sasl_initial_without_data:
                    self.send(message(b"p", b"SCRAM-SHA-256\x00" + struct.pack("!i", -1)))
                    first_pending = True
                else:
                    self.send(message(b"p", b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first))
            elif code == 11 and first_pending:  # the empty challenge
                if p[4:] != b"":
                    raise AssertionError(f"expected an empty SASL challenge, got {p[4:]!r}")
                first_pending = False
                self.send(message(b"p", scram.client_first()))
            elif code == 11:  # SASLContinue
                assert scram is not None
                self.send(message(b"p", scram.client_final(p[4:])))
            elif code == 12:  # SASLFinal
                assert scram is not None
                scram.verify_server_final(p[4:])
            else:
                raise AssertionError(f"unsupported authentication request {code}")
        # after AuthenticationOk: ParameterStatus*, BackendKeyData, ReadyForQuery (or an ErrorResponse)
        while True:
            t, p = self.read_message()
            if t == b"S":
                k, v, _ = p.split(b"\x00", 2)
                self.parameters[k.decode()] = v.decode()
            elif t == b"K":
                self.backend_key = struct.unpack("!ii", p)
            elif t == b"N":
                self.notices.append(parse_error_fields(p))
            elif t == b"E":
                raise PgError(parse_error_fields(p))
            elif t == b"Z":
                self.txn_status = p.decode()
                return
            else:
                raise AssertionError(f"unexpected message {t!r} after AuthenticationOk")

    # -- simple query ------------------------------------------------------------------------------------------
    def query(self, sql: str) -> list[list[str | None]]:
        """Runs a simple query; returns the rows of all result sets (text), raises PgError on an ErrorResponse
        (after consuming up to ReadyForQuery)."""
        self.send(query_message(sql))
        return self.read_until_ready()

    def read_until_ready(self) -> list[list[str | None]]:
        rows: list[list[str | None]] = []
        error = None
        while True:
            t, p = self.read_message()
            if t == b"D":
                (n,) = struct.unpack("!H", p[:2])
                i = 2
                row: list[str | None] = []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", p[i : i + 4])
                    i += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(p[i : i + ln].decode())
                        i += ln
                rows.append(row)
            elif t == b"E":
                error = PgError(parse_error_fields(p))
            elif t == b"N":
                self.notices.append(parse_error_fields(p))
            elif t == b"S":
                k, v, _ = p.split(b"\x00", 2)
                self.parameters[k.decode()] = v.decode()
            elif t == b"Z":
                self.txn_status = p.decode()
                if error is not None:
                    raise error
                return rows
            # T, C, I, 1, 2, 3, n, s ... are skipped

    def read_error(self) -> PgError:
        """Reads messages until an ErrorResponse and returns it (raises ConnectionClosed on EOF first)."""
        while True:
            t, p = self.read_message()
            if t == b"E":
                return PgError(parse_error_fields(p))

    def terminate(self) -> None:
        try:
            self.send(message(b"X", b""))
        except OSError:
            pass
        self.close()


class _Scram:
    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.auth_message = b""
        self.salted = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        r, s, i = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not r.startswith(self.nonce):
            raise AssertionError("server nonce does not extend the client nonce")
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password, s, i)
        client_key = hmac.new(self.salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={r}"
        self.auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        sig = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if "e" in attrs:
            raise AssertionError(f"SCRAM server error: {attrs['e']}")
        server_key = hmac.new(self.salted, b"Server Key", hashlib.sha256).digest()
        expected = hmac.new(server_key, self.auth_message, hashlib.sha256).digest()
        if base64.b64decode(attrs["v"]) != expected:
            raise AssertionError("SCRAM server signature does not verify")
