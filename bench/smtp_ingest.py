"""SMTP ingest benchmark: N parallel sessions x M messages of S bytes into local mailboxes.

Prints figures; it is not a test. It starts `posthorn serve` (SMTP only) on a loopback port with
a fresh data directory, adds ``--users`` accounts, and drives it with pipelined asyncio clients
(MAIL, RCPTs and DATA in one write, RFC 2920), so the client side costs little CPU. Reported:

- accepted messages/s: 250 replies after DATA per second (each one durable: fsync'd file and
  directory, committed queue record);
- delivered messages/s and deliveries/s: until every copy is in its mailbox (counted through
  the store), from the first message sent;
- p50/p99 reply latency: from the end-of-data marker sent to the 250 received.

    .venv/bin/python bench/smtp_ingest.py                       # 20 x 5000 x 2 KB, 10 rcpts
    .venv/bin/python bench/smtp_ingest.py --sessions 20 --messages 500 --recipients 1
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posthorn.store.sqlite import SQLiteMailStore


def start_server(root: Path, max_size: int) -> tuple[subprocess.Popen[str], int]:
    config = root / "posthorn.toml"
    off = "".join(
        f"{s} = []\n"
        for s in ("submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http")
    )
    config.write_text(
        f'[server]\nhostname = "bench.test"\ndata_dir = "data"\ndomains = ["bench.test"]\n'
        f'[listen]\nsmtp = ["127.0.0.1:0"]\n{off}'
        f"[smtp]\nmax_message_size = {max_size}\nmax_connections_per_ip = 1000\n"
        f"max_recipients = 1000\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthorn", "serve", "-c", str(config), "--log-level", "warning"],
        stderr=subprocess.PIPE,
        text=True,
    )
    # warning level hides listener.bound; find the port with a second, quick listing instead.
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    port = None
    while port is None and time.monotonic() < deadline:
        port = _listening_port(proc.pid)
        time.sleep(0.1)
    if port is None:
        proc.kill()
        raise SystemExit("posthorn did not start")
    return proc, port


def _listening_port(pid: int) -> int | None:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if f"pid={pid}," in line:
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def cli(root: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "posthorn", *args, "-c", str(root / "posthorn.toml")],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


async def session(
    port: int, messages: int, body: bytes, rcpts: list[bytes], latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> int:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return int(line[:3])

    await reply()
    writer.write(b"EHLO bench.client\r\n")
    await writer.drain()
    await reply()
    envelope = (
        b"MAIL FROM:<load@remote.test>\r\n"
        + b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        + b"DATA\r\n"
    )
    accepted = 0
    for _ in range(messages):
        began = time.perf_counter()
        writer.write(envelope)
        for _ in range(len(rcpts) + 2):
            await reply()
        sent = time.perf_counter()
        ENVELOPE_TIMES.append(sent - began)
        writer.write(body)
        await writer.drain()
        if await reply() == 250:
            accepted += 1
            latencies.append(time.perf_counter() - sent)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return accepted


ENVELOPE_TIMES: list[float] = []


def message(size: int) -> bytes:
    head = b"From: load@remote.test\r\nTo: users@bench.test\r\nSubject: bench\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = head + line * max(1, (size - len(head)) // len(line))
    return body + b".\r\n"


async def count_delivered(data_dir: Path, users: list[str]) -> int:
    store = SQLiteMailStore(data_dir)
    await store.open()
    try:
        total = 0
        for user in users:
            box = await store.get_mailbox(user, "INBOX")
            total += (await store.status(user, box.id)).messages
        return total
    finally:
        await store.close()


async def run(args: argparse.Namespace, port: int, data_dir: Path, users: list[str]) -> None:
    body = message(args.size)
    latencies: list[float] = []
    per_message = min(args.recipients, len(users))
    started = time.perf_counter()
    tasks = []
    for n in range(args.sessions):
        rcpts = [users[(n + k) % len(users)].encode() for k in range(per_message)]
        tasks.append(session(port, args.messages, body, rcpts, latencies))
    accepted = sum(await asyncio.gather(*tasks))
    accept_time = time.perf_counter() - started
    expected = accepted * per_message
    delivered = 0
    while delivered < expected:
        delivered = await count_delivered(data_dir, users)
        if delivered < expected:
            await asyncio.sleep(0.5)
    total_time = time.perf_counter() - started
    latencies.sort()
    print(
        f"sessions {args.sessions} x messages {args.messages} x {len(body) - 3} bytes, "
        f"{per_message} recipients each"
    )
    print(
        f"accepted   {accepted / accept_time:10,.0f} msg/s   ({accepted:,} in {accept_time:.1f} s)"
    )
    print(
        f"delivered  {accepted / total_time:10,.0f} msg/s   "
        f"{expected / total_time:,.0f} deliveries/s ({expected:,} in {total_time:.1f} s)"
    )
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"reply latency after DATA  p50 {p50:.1f} ms   p99 {p99:.1f} ms")
    env = statistics.median(ENVELOPE_TIMES) * 1000
    print(f"envelope (MAIL, RCPTs, DATA to 354) p50 {env:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000, help="per session")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="posthorn-ingest-"))
    proc, port = start_server(root, max(args.size * 4, 1 << 20))
    try:
        users = [f"user{i}@bench.test" for i in range(args.users)]
        for user in users:
            cli(root, "user", "add", user, "--password-stdin", stdin="bench-password\n")
        asyncio.run(run(args, port, root / "data", users))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data kept in {root}")


if __name__ == "__main__":
    main()
