"""Outbound relay benchmark: messages/s relayed from instance A to instance B over loopback.

Prints figures; it is not a test. Everything stays on 127.0.0.1:

- a FakeDNS (tests/support/dns_server.py) serving ``b.test MX 10 mx.b.test`` and
  ``mx.b.test A 127.0.0.1`` with a TTL of ``--dns-ttl`` (300 s, so A's resolver cache works as
  with real DNS; 0 makes every message cost three queries: MX, A, AAAA);
- instance B, `posthorn serve` with only the SMTP listener, domain b.test, accounts
  bob@b.test, bob2@b.test, ... (one per ``--recipients``);
- instance A, `posthorn serve` with only the submission listener, domain a.test, account
  alice@a.test, ``[outbound] nameservers = [FakeDNS]`` and ``mx_port`` = B's SMTP port, so A
  finds B through a real MX lookup and relays to it (STARTTLS, B's self-signed certificate).

``--sessions`` asyncio clients submit to A at once (EHLO, AUTH PLAIN as alice, then MAIL, RCPTs
and DATA pipelined), ``--messages`` messages in all, each to ``--recipients`` recipients on
b.test. Reported:

- accepted msg/s: A's 250 replies after DATA per second (all submissions done);
- relayed msg/s, end to end: from the first submission until every copy is in its INBOX on B
  (B's database polled every 0.5 s through a separate read-only SQLite connection), and the
  deliveries/s that makes;
- at the end, A's queue (`posthorn queue list` must print nothing) and each INBOX's count
  through `posthorn mail mailboxes`.

    .venv/bin/python bench/outbound.py                          # 20 sessions, 2000 msgs, 1 rcpt
    .venv/bin/python bench/outbound.py --recipients 5
    .venv/bin/python bench/outbound.py --messages 500 --size 10000 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.dns_server import FakeDNS  # noqa: E402

ALICE = ("alice@a.test", "alice-bench-secret")
OFF = ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http")
INBOX_COUNT = (
    "SELECT count(*) FROM messages JOIN mailboxes ON mailboxes.id = messages.mailbox_id "
    "WHERE mailboxes.name = 'INBOX'"
)


class Instance:
    """One `posthorn serve` with a single loopback listener, in its own directory."""

    def __init__(self, root: Path, name: str, service: str, config: str, log_level: str) -> None:
        self.root = root / name
        self.root.mkdir()
        self.config = self.root / "posthorn.toml"
        off = "".join(f"{s} = []\n" for s in OFF if s != service)
        self.config.write_text(
            f'[server]\nhostname = "mx.{name}.test"\ndata_dir = "data"\n'
            f'domains = ["{name}.test"]\nshutdown_timeout = 10\n'
            f'[listen]\n{service} = ["127.0.0.1:0"]\n{off}{config}'
        )
        level = ("--log-level", log_level)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "posthorn", "serve", "-c", str(self.config), *level],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr.log").open("w"),
            cwd=ROOT,
        )
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        # The log level may hide listener.bound: find the one listening port with ss.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if f"pid={self.proc.pid}," in line:
                    m = re.search(r"127\.0\.0\.1:(\d+)", line)
                    if m:
                        return int(m.group(1))
            time.sleep(0.1)
        self.stop()
        log = (self.root / "stderr.log").read_text()
        raise SystemExit(f"posthorn ({self.root.name}) did not start:\n{log}")

    def cli(self, *args: str, stdin: str | None = None, retry: float = 0) -> str:
        """Run a `posthorn` command on this instance; ``retry``: seconds to keep trying."""
        deadline = time.monotonic() + retry
        while True:
            done = subprocess.run(
                [sys.executable, "-m", "posthorn", *args, "-c", str(self.config)],
                input=stdin,
                text=True,
                capture_output=True,
                cwd=ROOT,
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if done.returncode != 0:
            raise SystemExit(f"posthorn {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tracebacks(self) -> int:
        return (self.root / "stderr.log").read_text().count("Traceback")


def message(size: int, n: int, rcpts: list[bytes]) -> bytes:
    head = (
        f"From: Alice <{ALICE[0]}>\r\nTo: {', '.join(r.decode() for r in rcpts)}\r\n"
        f"Subject: relay bench {n}\r\nMessage-ID: <bench-{n}-{os.getpid()}@a.test>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line)) + b".\r\n"


LATENCIES: list[float] = []


async def session(port: int, numbers: range, size: int, rcpts: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> tuple[int, bytes]:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("A closed the submission session")
            if line[3:4] != b"-":
                return int(line[:3]), line

    async def command(data: bytes, want: int) -> None:
        writer.write(data)
        code, line = await reply()
        if code != want:
            raise RuntimeError(f"{data[:20]!r} -> {line!r}")

    code, line = await reply()
    if code != 220:
        raise RuntimeError(f"greeting {line!r}")
    await command(b"EHLO bench.client\r\n", 250)
    token = base64.b64encode(f"\0{ALICE[0]}\0{ALICE[1]}".encode())
    await command(b"AUTH PLAIN " + token + b"\r\n", 235)
    envelope = (
        f"MAIL FROM:<{ALICE[0]}>\r\n".encode()
        + b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        + b"DATA\r\n"
    )
    accepted = 0
    for n in numbers:
        writer.write(envelope)  # RFC 2920: MAIL, RCPTs and DATA in one write
        for _ in range(len(rcpts) + 2):
            code, line = await reply()
            if code >= 400:
                raise RuntimeError(f"envelope refused: {line!r}")
        sent = time.perf_counter()
        writer.write(message(size, n, rcpts))
        await writer.drain()
        code, line = await reply()
        if code != 250:
            raise RuntimeError(f"message refused: {line!r}")
        accepted += 1
        LATENCIES.append(time.perf_counter() - sent)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return accepted


def inbox_total(db: Path) -> int:
    """Messages in every INBOX of B, through a read-only connection (never writes B's files)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(INBOX_COUNT).fetchone()[0])
    finally:
        conn.close()


async def run(args: argparse.Namespace, a: Instance, b: Instance, rcpts: list[bytes]) -> None:
    expected = args.messages * len(rcpts)
    db = b.root / "data" / "mail.sqlite3"
    already = inbox_total(db)
    per, extra = divmod(args.messages, args.sessions)
    ranges, start = [], 0
    for s in range(args.sessions):
        count = per + (1 if s < extra else 0)
        ranges.append(range(start, start + count))
        start += count
    load = os.getloadavg()
    cpu = a.cpu_seconds(), b.cpu_seconds()
    started = time.perf_counter()
    accepted = sum(
        await asyncio.gather(*(session(a.port, r, args.size, rcpts) for r in ranges if r))
    )
    accept_time = time.perf_counter() - started
    delivered = 0
    deadline = started + args.timeout
    timeline: list[tuple[float, int]] = []
    while True:
        delivered = await asyncio.to_thread(inbox_total, db) - already
        timeline.append((time.perf_counter() - started, delivered))
        if delivered >= expected or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.5)
    relay_time = time.perf_counter() - started
    load_after = os.getloadavg()
    cpu = a.cpu_seconds() - cpu[0], b.cpu_seconds() - cpu[1]

    queue = a.cli("queue", "list").strip()
    left = 0 if queue in ("", "queue is empty") else len(queue.splitlines())
    counts = []
    for r in rcpts:
        out = b.cli("mail", "mailboxes", r.decode())
        inbox = [ln.split("\t") for ln in out.splitlines() if ln.startswith("INBOX\t")]
        counts.append(int(inbox[0][2]) if inbox else 0)
    LATENCIES.sort()
    p50 = statistics.median(LATENCIES) * 1000
    p99 = LATENCIES[max(0, int(len(LATENCIES) * 0.99) - 1)] * 1000
    most = next((t for t, d in timeline if d >= 0.95 * expected), relay_time)
    done = "all" if delivered >= expected else f"ONLY {delivered:,} (timed out)"

    print(
        f"{args.sessions} sessions, {accepted:,} messages of {args.size:,} bytes, "
        f"{len(rcpts)} recipient(s) each; A->B over loopback (MX lookup, STARTTLS), "
        f"DNS TTL {args.dns_ttl} s"
    )
    print(f"load average before {load[0]:.2f} {load[1]:.2f}, after {load_after[0]:.2f}")
    rows = [
        ("accepted by A", f"{accepted / accept_time:,.0f} msg/s", f"{accept_time:.1f} s"),
        (
            "relayed A->B, end to end",
            f"{accepted / relay_time:,.0f} msg/s",
            f"{relay_time:.1f} s ({done} {expected:,} deliveries, {delivered / relay_time:,.0f}/s)",
        ),
        (
            "first 95 % on B",
            f"{0.95 * accepted / most:,.0f} msg/s",
            f"{most:.1f} s (polled every 0.5 s)",
        ),
        ("reply after DATA p50/p99", f"{p50:.0f} / {p99:.0f} ms", ""),
        (
            "CPU of A / B",
            f"{cpu[0]:.1f} / {cpu[1]:.1f} s",
            f"{1000 * cpu[0] / accepted:.1f} / {1000 * cpu[1] / accepted:.1f} ms per message",
        ),
        ("A's queue afterwards", f"{left} left" if left else "empty", ""),
        ("INBOX counts (CLI)", " ".join(str(c) for c in counts), ""),
    ]
    width = max(len(r[0]) for r in rows)
    for label, figure, note in rows:
        print(f"  {label:<{width}}  {figure:>16}  {note}")
    if args.timeline:
        step, shown = 0.0, []
        for t, d in timeline:
            if t >= step:
                shown.append(f"{t:.0f}s:{d}")
                step = t + args.timeline
        print("  deliveries on B over time: " + " ".join(shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="in all (default 2000)")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=1, help="per message, on b.test")
    parser.add_argument("--size", type=int, default=2048, help="bytes per message")
    parser.add_argument(
        "--dns-ttl", type=int, default=300, help="of the MX and A records (0: A never caches)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="give up relaying after")
    parser.add_argument(
        "--timeline", type=float, default=5, help="print B's count every N s (0: never)"
    )
    parser.add_argument("--log-level", default="warning", help="of both instances")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    rcpts = [b"bob@b.test"] + [f"bob{i}@b.test".encode() for i in range(2, args.recipients + 1)]
    root = Path(tempfile.mkdtemp(prefix="posthorn-outbound-"))
    limits = (
        f"[smtp]\nmax_connections_per_ip = 1000\nmax_recipients = 1000\n"
        f"max_message_size = {max(args.size * 4, 1 << 20)}\n"
    )
    instances: list[Instance] = []
    try:
        with FakeDNS(ttl=args.dns_ttl) as dns:
            dns.set("b.test", [("MX", "10 mx.b.test")])
            dns.set("mx.b.test", [("A", "127.0.0.1")])
            # B sends nothing, but its resolver must not reach beyond loopback either.
            nowhere = '[outbound]\nnameservers = ["127.0.0.1:1"]\n'
            b = Instance(root, "b", "smtp", limits + nowhere, args.log_level)
            instances.append(b)
            # The port is bound before the server adds its domains: retry the first user.
            for r in rcpts:
                b.cli("user", "add", r.decode(), "--password-stdin", stdin="bob-pw\n", retry=20)
            outbound = (
                f'[outbound]\nnameservers = ["{dns.address}"]\nmx_port = {b.port}\n'
                f'retry_first = "1s"\nretry_max = "2s"\n'
            )
            a = Instance(root, "a", "submission", limits + outbound, args.log_level)
            instances.append(a)
            a.cli("user", "add", ALICE[0], "--password-stdin", stdin=ALICE[1] + "\n", retry=20)
            print(f"A pid {a.proc.pid} (submission :{a.port}), B pid {b.proc.pid} (smtp :{b.port})")
            asyncio.run(run(args, a, b, rcpts))
            non_mx = [q for q in dns.queries if q[0] not in ("b.test", "mx.b.test")]
            if non_mx:
                print(f"unexpected DNS queries: {non_mx[:5]}")
    finally:
        for instance in reversed(instances):
            code = instance.stop()
            if code or instance.tracebacks():
                print(f"{instance.root.name}: exit {code}, {instance.tracebacks()} tracebacks")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
