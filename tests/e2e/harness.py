"""`posthorn serve` as a subprocess on ephemeral loopback ports, and its CLI.

Every listener is configured on 127.0.0.1:0; the ports actually bound are read back from the
server's own ``listener.bound`` log lines, which also checks that those lines exist.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from posthorn.config import SERVICES

BOUND = re.compile(r"event=listener\.bound .*service=(\w+) addr=(\S+)")


class Posthorn:
    def __init__(
        self,
        root: Path,
        extra: str = "",
        services: tuple[str, ...] = SERVICES,
        *,
        hostname: str = "mail.example.test",
        domains: tuple[str, ...] = ("example.test",),
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_path = root / "posthorn.toml"
        if "[outbound]" not in extra:
            # Never ask the machine's resolver (traffic must stay on loopback): mail for
            # other domains just waits in the queue, its DNS lookups failing fast.
            extra += '\n[outbound]\nnameservers = ["127.0.0.1:1"]\n'
        listen = "\n".join(f'{s} = ["127.0.0.1:0"]' for s in services)
        disabled = "\n".join(f"{s} = []" for s in SERVICES if s not in services)
        self.config_path.write_text(
            f'[server]\nhostname = "{hostname}"\ndata_dir = "data"\n'
            f"domains = [{', '.join(repr(d) for d in domains)}]\nshutdown_timeout = 5\n"
            f"[listen]\n{listen}\n{disabled}\n{extra}"
        )
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self._started = threading.Event()

    def start(self, timeout: float = 20) -> Posthorn:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "posthorn", "serve", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("posthorn did not start:\n" + "\n".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            m = BOUND.search(line)
            if m:
                self.ports[m.group(1)] = int(m.group(2).rsplit(":", 1)[1])
            if "event=server.started" in line:
                self._started.set()
        self._started.set()

    def cli(
        self, *args: str, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "posthorn", *args, "-c", str(self.config_path)],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"posthorn {' '.join(args)} failed: {result.stderr}")
        return result

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("posthorn did not stop in time") from None

    def wait_for_log(self, pattern: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + "\n".join(self.lines))
