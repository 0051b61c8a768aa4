"""kill -9 while 20 clients send: every message that got a 250 is in a mailbox after restart."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

from tests.e2e.harness import Posthorn
from tests.e2e.mail import inbox

CLIENTS = 20


def sender(port: int, n: int, accepted: list[str], stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        subject = f"crash-{n}-{i}"
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                while not stop.is_set():
                    subject = f"crash-{n}-{i}"
                    msg = f"From: c{n}@remote.test\r\nSubject: {subject}\r\n\r\nbody {i}\r\n"
                    s.sendmail(f"c{n}@remote.test", ["alice@example.test"], msg.encode())
                    accepted.append(subject)  # only reached after the 250
                    i += 1
        except (OSError, smtplib.SMTPException):
            i += 1  # this one may or may not have been accepted: not counted
            time.sleep(0.05)


def test_kill_9_loses_nothing_accepted(tmp_path: Path) -> None:
    server = Posthorn(tmp_path, services=("smtp",)).start()
    server.cli("user", "add", "alice@example.test", check=True)
    accepted: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(server.ports["smtp"], n, accepted, stop))
        for n in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(accepted) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(30)
    got_250 = list(accepted)
    assert len(got_250) >= 100, f"only {len(got_250)} messages accepted before the kill"

    restarted = Posthorn(tmp_path, services=("smtp",))
    restarted.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            subjects = Counter(row[5] for row in inbox(restarted, "alice@example.test"))
            missing = [s for s in got_250 if s not in subjects]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, (
            f"{len(missing)} of {len(got_250)} accepted messages lost: {missing[:5]}"
        )
        duplicates = {s: c for s, c in subjects.items() if c > 1}
        print(f"kill -9 after {len(got_250)} accepted; all delivered; duplicates: {duplicates}")
    finally:
        assert restarted.stop() == 0
