"""Opens N client connections to a pooler, logs each one in (SCRAM-SHA-256, MD5, cleartext or trust) and leaves
them idle, then reports the pooler's resident memory (VmRSS of the given pid) before and with them all open.

    python3 scripts/lib/idle_clients.py --port 6432 --pid 1234 --count 10000

Prints one line: "connected=N failed=F baseline_kb=B rss_kb=R seconds=S". A raw-protocol asyncio client, so that
ten thousand connections cost this process little (psycopg or asyncpg would need a thread or an object each).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import resource
import struct
import time

SALTED: dict[tuple[bytes, int], bytes] = {}  # PBKDF2 is the expensive part; a pooler may reuse one salt


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], await reader.readexactly(length - 4)


async def login(host: str, port: int, user: str, password: str, database: str):
    reader, writer = await asyncio.open_connection(host, port)
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                      (("user", user), ("database", database), ("application_name", "idle-bench"))) + b"\0"
    body = struct.pack("!I", 196608) + params
    writer.write(struct.pack("!I", len(body) + 4) + body)
    nonce = client_first_bare = server_first = salted = None
    while True:
        kind, payload = await read_message(reader)
        if kind == b"E":
            raise RuntimeError(payload.decode(errors="replace"))
        if kind == b"Z":
            return reader, writer
        if kind != b"R":
            continue
        code = struct.unpack("!I", payload[:4])[0]
        if code == 3:  # cleartext
            writer.write(message(b"p", password.encode() + b"\0"))
        elif code == 5:  # md5
            inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
            writer.write(message(b"p", b"md5" + hashlib.md5(inner + payload[4:8]).hexdigest().encode() + b"\0"))
        elif code == 10:  # SASL: start SCRAM-SHA-256
            nonce = base64.b64encode(os.urandom(18)).decode()
            client_first_bare = f"n=,r={nonce}"
            first = ("n,," + client_first_bare).encode()
            writer.write(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        elif code == 11:  # SASL continue: server-first-message
            server_first = payload[4:].decode()
            fields = dict(item.split("=", 1) for item in server_first.split(","))
            salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
            salted = SALTED.get((salt, iterations))
            if salted is None:
                salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
                SALTED[(salt, iterations)] = salted
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored_key = hashlib.sha256(client_key).digest()
            without_proof = f"c=biws,r={fields['r']}"
            auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
            signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, signature))
            writer.write(message(b"p", f"{without_proof},p={base64.b64encode(proof).decode()}".encode()))
        # 0 (ok) and 12 (SASL final) need no answer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the pooler's process id (for VmRSS)")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--user", default="app")
    parser.add_argument("--password", default="app")
    parser.add_argument("--database", default="app")
    parser.add_argument("--concurrency", type=int, default=100, help="logins in flight at once")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.count + 1000)), hard))

    baseline = rss_kb(args.pid)
    started = time.monotonic()
    gate = asyncio.Semaphore(args.concurrency)
    connections, failures = [], []

    async def one() -> None:
        async with gate:
            try:
                connections.append(await asyncio.wait_for(
                    login(args.host, args.port, args.user, args.password, args.database), 60))
            except Exception as error:  # counted and reported, never silently dropped
                failures.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(one() for _ in range(args.count)))
    seconds = time.monotonic() - started
    await asyncio.sleep(2)  # let the pooler settle
    rss = rss_kb(args.pid)
    for _, writer in connections:
        writer.write(message(b"X", b""))
        writer.close()
    print(f"connected={len(connections)} failed={len(failures)} baseline_kb={baseline} rss_kb={rss} "
          f"seconds={seconds:.1f}" + (f" first_error={failures[0][:120]!r}" if failures else ""))


if __name__ == "__main__":
    asyncio.run(main())
