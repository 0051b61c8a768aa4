"""IMAP limits and faults against `posthorn serve`: timeouts, connection caps, storage errors,
shutdown, and failed-login lockout."""

from __future__ import annotations

import imaplib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Posthorn

PASSWORD = "alice-secret-1"
LIMITS = """
[imap]
autologout = 2
login_timeout = 1
max_connections_per_ip = 4
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(tmp_path_factory.mktemp("imaplimits"), extra=LIMITS, services=("imap",)).start()
    ph.cli("user", "add", "alice@example.test", "--password-stdin", input=PASSWORD + "\n")
    ph.cli("user", "add", "carol@example.test", "--password-stdin", input="carol-pw-3\n")
    yield ph
    assert ph.stop() == 0


def read_all(sock: socket.socket, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_login_timeout_sends_bye(server: Posthorn) -> None:
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]))
    start = time.monotonic()
    data = read_all(sock)
    assert data.startswith(b"* OK [CAPABILITY")
    assert data.endswith(b"* BYE [UNAVAILABLE] autologout: idle too long\r\n")
    assert 0.8 < time.monotonic() - start < 4


def test_autologout_after_login_also_during_idle(server: Posthorn) -> None:
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]))
    sock.sendall(
        f'a LOGIN alice@example.test "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode()
    )
    start = time.monotonic()
    data = read_all(sock, timeout=8)
    assert b"+ idling\r\n" in data
    assert data.endswith(b"* BYE [UNAVAILABLE] autologout: idle too long\r\n")
    assert time.monotonic() - start > 1.5  # the longer, logged-in timer applies


def test_connections_per_ip_are_capped(server: Posthorn) -> None:
    socks = [socket.create_connection(("127.0.0.1", server.ports["imap"])) for _ in range(4)]
    for s in socks:
        assert s.recv(1000).startswith(b"* OK")
    extra = socket.create_connection(("127.0.0.1", server.ports["imap"]))
    assert read_all(extra) == b"* BYE [UNAVAILABLE] too many connections\r\n"
    for s in socks:
        s.close()
    time.sleep(0.3)
    again = socket.create_connection(("127.0.0.1", server.ports["imap"]))
    assert again.recv(1000).startswith(b"* OK")
    again.close()


def test_unreadable_message_file_fails_the_command_not_the_session(server: Posthorn) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login("alice@example.test", PASSWORD)
    m.create("Broken")
    m.append("Broken", None, None, b"Subject: doomed\r\n\r\nbody\r\n")
    m.select("Broken")
    for blob in (server.data_dir / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    typ, data = m.fetch("1", "(BODY[])")
    assert typ == "NO" and data == [b"[SERVERBUG] could not read message UID 1"]
    typ, data = m.fetch("1", "(FLAGS)")  # the session goes on
    assert typ == "OK" and data[0] is not None and b"FLAGS" in data[0]
    m.logout()
    assert server.wait_for_log("event=imap.storage_error")


def test_brute_force_is_locked_out(server: Posthorn) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    errors = []
    for _ in range(6):
        try:
            m.login("carol@example.test", "wrong")
        except imaplib.IMAP4.error as e:
            errors.append(str(e))
    assert "AUTHENTICATIONFAILED" in errors[0]
    assert any("UNAVAILABLE" in e for e in errors), errors
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        m.login("carol@example.test", "carol-pw-3")  # locked: not even checked
    m.logout()
