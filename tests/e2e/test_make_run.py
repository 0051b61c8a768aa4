"""The quick start itself: `make run` serves, answers, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_run_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "posthorn.toml"
    config.write_text(
        '[server]\ndata_dir = "data"\n[listen]\n'
        + "".join(
            f"{s} = []\n"
            for s in ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s")
        )
        + 'http = ["127.0.0.1:0"]\n'
    )
    proc = subprocess.Popen(
        ["make", "-s", "-C", str(REPO), "run", f"CONFIG={config}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "event=server.started" in line:
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert started.wait(120), "".join(lines)
        port = next(
            int(m.group(1))
            for line in lines
            if (m := re.search(r"event=listener\.bound service=http addr=\S+:(\d+)", line))
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        proc.wait(30)
    output = "".join(lines)
    assert "event=server.stopped" in output
    assert "Traceback" not in output
