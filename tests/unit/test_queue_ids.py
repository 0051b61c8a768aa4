"""Queue ids (posthorn.queue.ids): shape, uniqueness, order."""

from __future__ import annotations

import threading

from posthorn.queue.ids import ALPHABET, ID_LENGTH, QueueIdSource, encode, is_queue_id


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_shape() -> None:
    qid = QueueIdSource().new()
    assert len(qid) == ID_LENGTH and is_queue_id(qid)
    assert set(qid) <= set(ALPHABET)
    assert not set("ILOU") & set(ALPHABET)
    assert not is_queue_id(qid + ".tmp")
    assert not is_queue_id(qid.lower())


def test_encode() -> None:
    assert encode(0) == "0" * 12
    assert encode(31, 2) == "0Z"
    assert encode(32, 2) == "10"


def test_unique_and_ascending_within_one_millisecond() -> None:
    source = QueueIdSource(Clock(1_700_000_000.0))
    ids = [source.new() for _ in range(70_000)]  # more than the counter's range
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_clock_stepping_back_never_repeats() -> None:
    clock = Clock(1_700_000_000.5)
    source = QueueIdSource(clock)
    first = [source.new() for _ in range(10)]
    clock.now -= 3600
    later = [source.new() for _ in range(10)]
    assert later[0] > first[-1]
    assert len(set(first + later)) == 20


def test_sorts_by_time() -> None:
    clock = Clock(1_700_000_000.0)
    source = QueueIdSource(clock)
    a = source.new()
    clock.now += 0.002
    b = source.new()
    clock.now += 86400
    c = source.new()
    assert a < b < c


def test_thread_safe() -> None:
    source = QueueIdSource()
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [source.new() for _ in range(2000)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 16000
