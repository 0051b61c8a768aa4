"""`posthorn serve` as operators run it: start, answer, log, stop cleanly, fail clearly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from posthorn.config import SERVICES
from tests.e2e.harness import Posthorn


def curl_json(port: int, path: str) -> dict[str, object]:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    server = Posthorn(tmp_path).start()
    try:
        assert curl_json(server.ports["http"], "/healthz")["status"] == "ok"
        # Every configured service is bound, or (without code yet) reported, never ignored.
        for service in SERVICES:
            server.wait_for_log(f"event=listener.(bound|not_available_yet) service={service} ")
        for service in ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "http"):
            server.wait_for_log(f"event=listener.bound service={service} ")
        assert (tmp_path / "data" / "tls" / "cert.pem").is_file()
    finally:
        code = server.stop(sig)
    assert code == 0
    server.wait_for_log("event=listener.stopped service=http")
    server.wait_for_log("event=server.stopped")
    assert not any("Traceback" in line for line in server.lines)


def test_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    first = Posthorn(tmp_path, services=("http",)).start()
    first.stop()
    cert = (tmp_path / "data" / "tls" / "cert.pem").read_bytes()
    second = Posthorn(tmp_path, services=("http",)).start()
    second.stop()
    assert (tmp_path / "data" / "tls" / "cert.pem").read_bytes() == cert


ONLY_HTTP = "".join(
    f"{s} = []\n"
    for s in ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s")
)


def run_serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posthorn", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "posthorn.toml"
        config.write_text(
            f'[server]\ndata_dir = "data"\n[listen]\n{ONLY_HTTP}http = ["127.0.0.1:{port}"]\n'
        )
        result = run_serve(config)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_data_dir_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    config = tmp_path / "posthorn.toml"
    config.write_text(f'[server]\ndata_dir = "afile/data"\n[listen]\n{ONLY_HTTP}http = []\n')
    result = run_serve(config)
    assert result.returncode == 1
    assert "afile/data" in result.stderr and "not writable" in result.stderr
    assert "Traceback" not in result.stderr


def test_second_server_on_same_data_dir_refused(tmp_path: Path) -> None:
    server = Posthorn(tmp_path, services=("http",)).start()
    try:
        result = run_serve(server.config_path)
        assert result.returncode == 1
        assert "in use by another posthorn serve" in result.stderr
    finally:
        assert server.stop() == 0


def test_bad_config_does_not_start(tmp_path: Path) -> None:
    config = tmp_path / "posthorn.toml"
    config.write_text("[listen]\nsmtp = ['nowhere:25']\n")
    result = run_serve(config)
    assert result.returncode == 2
    assert "listen.smtp[0]" in result.stderr and str(config) in result.stderr


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[server]\nhostname = "mail.example.test"\n[listen]\npop3 = []\n')
    result = subprocess.run(
        [sys.executable, "-m", "posthorn", "check-config", "-c", str(good)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "hostname: mail.example.test" in result.stdout
    assert "listen.pop3: disabled" in result.stdout
    assert "config OK" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhostname = 3\ncolour = 'blue'\n[auth]\nplaintext_on_loopback = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "posthorn", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(str(bad) in line for line in lines)
    for key in ("server.hostname", "server.colour", "auth.plaintext_on_loopback"):
        assert any(key in line for line in lines)
