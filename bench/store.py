"""Benchmark of the embedded message store (SQLiteMailStore): append and metadata fetch rates.

Prints figures; it is not a test. Everything happens in a fresh temporary data directory
(or ``--dir``) with the real durability settings (fsync of every blob and its directory,
SQLite WAL with synchronous=FULL), so the append figures are bound by the disk's fsync rate.

    .venv/bin/python bench/store.py                    # defaults
    .venv/bin/python bench/store.py --appends 500 --concurrent-appends 2000 --fetch 10000

Measured:
- append, sequential: one appender, each append awaited (durable) before the next;
- append, concurrent: ``--concurrency`` appenders at once (group commit, parallel fsyncs);
- fetch: one ``fetch()`` of every message of a ``--fetch``-message mailbox, without and with
  the parse-once info (FETCH FLAGS vs FETCH ENVELOPE BODYSTRUCTURE), best of ``--repeat``;
- fetch under load: the same fetches while ``--load-writers`` appenders write to another
  mailbox of the store, with the appenders' rate and latency meanwhile (FETCH of a big
  mailbox while mail arrives);
- read_headers: the header sections of every message of the big mailbox in one call
  (FETCH BODY.PEEK[HEADER] of 10,000 messages), best of ``--repeat``;
- read: whole-message reads (FETCH BODY[]), sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from posthorn.store.base import Delivery
from posthorn.store.sqlite import SQLiteMailStore

ACCOUNT = "bench@example.org"


def make_message(n: int, size: int) -> bytes:
    """An RFC 5322 message of about ``size`` bytes with a realistic header block."""
    head = (
        "Return-Path: <sender@example.net>\r\n"
        "Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n"
        "\tby mail.example.org (posthorn) with ESMTPS id BENCH\r\n"
        "\tfor <bench@example.org>; Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{n}.bench@example.net>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        "From: Sender Example <sender@example.net>\r\n"
        "To: Bench <bench@example.org>\r\n"
        f"Subject: benchmark message {n}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = line * max(1, (size - len(head)) // len(line) + 1)
    return (head + body)[:size] if size > len(head) else head + line


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} msg/s  ({count:,} in {seconds:.2f} s)"


async def bench_append_sequential(store: SQLiteMailStore, box: int, n: int, size: int) -> None:
    data = [make_message(i, size) for i in range(n)]
    started = time.perf_counter()
    for d in data:
        await store.append(ACCOUNT, box, d)
    print(f"append, sequential            {rate(n, time.perf_counter() - started)}")


async def bench_append_concurrent(
    store: SQLiteMailStore, box: int, n: int, size: int, concurrency: int
) -> None:
    data = [make_message(i, size) for i in range(n)]
    queue = iter(data)

    async def appender() -> None:
        for d in queue:  # the workers share one iterator: each message is appended once
            await store.append(ACCOUNT, box, d)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    label = f"append, {concurrency} concurrent"
    print(f"{label:<30}{rate(n, time.perf_counter() - started)}")


async def fill(store: SQLiteMailStore, box: int, n: int, size: int) -> None:
    """``n`` distinct messages in ``box`` (50 concurrent deliveries, untimed). Distinct, so
    that ``with_info`` decodes one info per message, as in a real mailbox."""
    prefix = b"Delivered-To: bench@example.org\r\n"
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            await store.deliver(make_message(i, size), [Delivery(ACCOUNT, box, prefix=prefix)])

    await asyncio.gather(*(worker() for _ in range(50)))


async def bench_fetch(store: SQLiteMailStore, box: int, n: int, repeat: int) -> None:
    for with_info, label in ((False, "FLAGS"), (True, "with info (ENVELOPE etc.)")):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            metas = await store.fetch(ACCOUNT, box, with_info=with_info)
            times.append(time.perf_counter() - started)
            assert len(metas) == n
        best, median = min(times), statistics.median(times)
        print(
            f"fetch {n:,} msgs, {label:<24}{n / best:>10,.0f} msg/s  "
            f"(best {best * 1000:.1f} ms, median {median * 1000:.1f} ms)"
        )


async def bench_fetch_under_load(
    store: SQLiteMailStore, box: int, n: int, repeat: int, writers: int, size: int
) -> None:
    """Fetch the big mailbox (FLAGS, then with info) ``repeat`` times each while ``writers``
    appenders keep appending to another mailbox; report fetch times and the appends' rate and
    latency meanwhile."""
    target = (await store.create_mailbox(ACCOUNT, "bench/load")).id
    stop = asyncio.Event()
    latencies: list[float] = []

    async def appender(w: int) -> None:
        i = 0
        while not stop.is_set():
            started = time.perf_counter()
            await store.append(ACCOUNT, target, make_message(w * 1_000_000 + i, size))
            latencies.append(time.perf_counter() - started)
            i += 1

    tasks = [asyncio.create_task(appender(w)) for w in range(writers)]
    await asyncio.sleep(0.2)  # let the writers get going
    began, before = time.perf_counter(), len(latencies)
    for with_info, label in ((False, "FLAGS"), (True, "with info")):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            metas = await store.fetch(ACCOUNT, box, with_info=with_info)
            times.append(time.perf_counter() - started)
            assert len(metas) == n
        print(
            f"fetch {n:,} msgs, {label:<10} + {writers} writers  "
            f"best {min(times) * 1000:7.1f} ms, median {statistics.median(times) * 1000:7.1f} ms,"
            f" worst {max(times) * 1000:7.1f} ms"
        )
    elapsed, during = time.perf_counter() - began, latencies[before:]
    stop.set()
    await asyncio.gather(*tasks)
    during.sort()
    if during:
        p50 = during[len(during) // 2] * 1000
        p99 = during[min(len(during) - 1, int(len(during) * 0.99))] * 1000
        print(
            f"  appends meanwhile            {len(during) / elapsed:>10,.0f} msg/s  "
            f"(p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {during[-1] * 1000:.1f} ms)"
        )


async def bench_read_headers(store: SQLiteMailStore, box: int, n: int, repeat: int) -> None:
    read_headers = getattr(store, "read_headers", None)
    if read_headers is None:
        print("read_headers                  (not available in this store)")
        return
    uids = [m.uid for m in await store.fetch(ACCOUNT, box)]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        heads = await read_headers(ACCOUNT, box, uids)
        times.append(time.perf_counter() - started)
        assert len(heads) == n
    best, median = min(times), statistics.median(times)
    print(
        f"read_headers {n:,} msgs{'':<12}{n / best:>10,.0f} msg/s  "
        f"(best {best * 1000:.1f} ms, median {median * 1000:.1f} ms)"
    )


async def bench_read(store: SQLiteMailStore, box: int, n: int) -> None:
    uids = [m.uid for m in await store.fetch(ACCOUNT, box)][:n]
    started = time.perf_counter()
    for uid in uids:
        await store.read(ACCOUNT, box, uid)
    print(f"read whole message, sequential{rate(len(uids), time.perf_counter() - started)}")


async def main(args: argparse.Namespace) -> None:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="posthorn-bench-"))
    data_dir = base / "store"
    print(f"data directory: {data_dir}  (message size {args.size} bytes)")
    store = SQLiteMailStore(data_dir)
    await store.open()
    try:
        await store.ensure_account(ACCOUNT)
        seq = (await store.create_mailbox(ACCOUNT, "bench/sequential")).id
        conc = (await store.create_mailbox(ACCOUNT, "bench/concurrent")).id
        big = (await store.create_mailbox(ACCOUNT, "bench/fetch")).id
        if args.warmup:
            # Not timed: the first appends of a fresh store also create its fan-out
            # directories (a mkdir and a directory fsync each); measure the steady state.
            scratch = (await store.create_mailbox(ACCOUNT, "bench/warmup")).id
            await asyncio.gather(
                *(
                    store.append(ACCOUNT, scratch, make_message(i, args.size))
                    for i in range(args.warmup)
                )
            )
        if args.appends:
            await bench_append_sequential(store, seq, args.appends, args.size)
        if args.concurrent_appends:
            await bench_append_concurrent(
                store, conc, args.concurrent_appends, args.size, args.concurrency
            )
        if args.fetch:
            await fill(store, big, args.fetch, args.size)
            await bench_fetch(store, big, args.fetch, args.repeat)
            await bench_read_headers(store, big, args.fetch, args.repeat)
            if args.load_writers:
                await bench_fetch_under_load(
                    store, big, args.fetch, args.repeat, args.load_writers, args.size
                )
        if args.reads:
            await bench_read(store, seq if args.appends else big, args.reads)
    finally:
        await store.close()
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--warmup", type=int, default=1000, help="untimed appends first (0 = none)")
    p.add_argument("--appends", type=int, default=1000, help="sequential appends (0 = skip)")
    p.add_argument(
        "--concurrent-appends", type=int, default=4000, help="appends shared by the workers"
    )
    p.add_argument("--concurrency", type=int, default=20, help="concurrent appenders")
    p.add_argument("--fetch", type=int, default=10_000, help="messages in the fetched mailbox")
    p.add_argument("--repeat", type=int, default=5, help="fetch repetitions (best is shown)")
    p.add_argument(
        "--load-writers", type=int, default=4, help="appenders during fetch-under-load (0 = skip)"
    )
    p.add_argument("--reads", type=int, default=1000, help="whole-message reads (0 = skip)")
    p.add_argument("--size", type=int, default=2048, help="message size in bytes")
    p.add_argument("--dir", help="data directory parent (default: a fresh temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args(sys.argv[1:])))
