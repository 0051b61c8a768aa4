"""Outbound delivery end to end, the operational side of issue 6: crash safety under
``kill -9`` (point 7), the queue CLI against a running server (point 6), connection reuse and
the per-destination limit, extensions the next hop lacks (point 3), and bounces that are never
bounced (point 4).

The setup is test_outbound.py's: a real DNS server on loopback (FakeDNS), ``posthorn serve``
subprocesses, and aiosmtpd doubles (RemoteMTA) for the other organisations' servers, each on
its own 127.0.0.x address and all on one port, the instances' ``outbound.mx_port``. Nothing
listens on `DEAD`: an MX there refuses connections, so its mail is deferred.
"""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import cat, inbox
from tests.support.dns_server import FakeDNS
from tests.support.mta import RemoteMTA, Script

ALICE = ("alice@a.test", "alice-secret-1")
DEAD = "127.0.0.19"
FAILED = "Undelivered Mail Returned to Sender"


def free_port() -> int:
    """A port free on 127.0.0.1 for the doubles (each binds its own 127.0.0.x with it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def message(subject: str, to: str, sender: str = ALICE[0], body: str = "") -> bytes:
    text = body or f"Hello {to}.\r\n"
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{text}".encode()


def submit(
    server: Posthorn, to: list[str], subject: str, body: str = "", mail: list[str] | None = None
) -> None:
    """alice submits (authenticated, port 587's listener)."""
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.login(*ALICE)
        s.sendmail(
            ALICE[0], to, message(subject, ", ".join(to), body=body), mail_options=mail or []
        )


def outbound(dns: FakeDNS, port: int, more: str = "") -> str:
    return f'[outbound]\nnameservers = ["{dns.address}"]\nmx_port = {port}\n{more}'


def instance(root: Path, extra: str) -> Posthorn:
    return Posthorn(
        root,
        extra=extra,
        services=("smtp", "submission"),
        hostname="mx.a.test",
        domains=("a.test",),
    )


def mx(dns: FakeDNS, domain: str, address: str) -> None:
    dns.set(domain, [("MX", f"10 mx.{domain}")])
    dns.set(f"mx.{domain}", [("A", address)])


def poll(check: Callable[[], Any], timeout: float) -> Any:
    """``check()``'s first true value within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.1)


def wait_until(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    value = poll(check, timeout)
    assert value, f"timed out waiting for {what or check}"
    return value


def queued(server: Posthorn) -> list[dict[str, Any]]:
    """``posthorn queue list --json``."""
    out = server.cli("queue", "list", "--json", check=True).stdout
    records: list[dict[str, Any]] = json.loads(out)
    return records


def queued_for(server: Posthorn, address: str) -> list[dict[str, Any]]:
    return [m for m in queued(server) if any(r["address"] == address for r in m["recipients"])]


def deferred_id(server: Posthorn, address: str) -> str:
    """The queue id of the message to ``address``, once its first try was deferred."""

    def check() -> str | None:
        for m in queued_for(server, address):
            if m["state"] == "deferred":
                return str(m["queue_id"])
        return None

    found: str = wait_until(check, what=f"a deferred message to {address}")
    return found


def notices(server: Posthorn, needle: str) -> list[bytes]:
    """The raw failure notices in alice's INBOX that contain ``needle``."""
    found = []
    for row in inbox(server, ALICE[0]):
        if row[5] == FAILED:
            raw = cat(server, ALICE[0], row[0])
            if needle.encode() in raw:
                found.append(raw)
    return found


@dataclass
class World:
    dns: FakeDNS
    a: Posthorn
    port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Instance A (a.test, alice): a 10-minute first retry, so deferred mail stays put until
    the CLI moves it, and at most one session per destination."""
    port = free_port()
    with FakeDNS() as dns:
        a = instance(
            tmp_path_factory.mktemp("a"),
            outbound(
                dns, port, 'retry_first = "10m"\nretry_max = "10m"\nmax_per_destination = 1\n'
            ),
        ).start()
        a.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
        yield World(dns, a, port)
        assert a.stop() == 0
        assert not [ln for ln in a.lines if "Traceback" in ln], "\n".join(a.lines)


# --- point 7: crash safety ---------------------------------------------------------------


def test_kill_9_during_delivery_repeats_only_the_recipient_in_flight(tmp_path: Path) -> None:
    """One message to a fast and a slow remote domain; ``kill -9`` while the slow one is in
    DATA, after the fast one took the message. After the restart the fast one must not get
    it again (its delivery was over before the crash), the slow one gets it once or twice,
    and the queue ends empty."""
    port = free_port()
    with (
        FakeDNS() as dns,
        RemoteMTA("127.0.0.21", port) as fast,
        RemoteMTA("127.0.0.22", port, script=Script(data_delay=4.0)) as slow,
    ):
        mx(dns, "fast.test", "127.0.0.21")
        mx(dns, "slow.test", "127.0.0.22")
        extra = outbound(dns, port, 'retry_first = "1s"\nretry_max = "2s"\n')
        server = instance(tmp_path, extra).start()
        restarted: Posthorn | None = None
        try:
            server.cli(
                "user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True
            )
            submit(server, ["f@fast.test", "s@slow.test"], "crash in flight")
            wait_until(lambda: fast.messages_to("f@fast.test"), what="the fast delivery")
            wait_until(lambda: slow.data_started, what="the slow DATA")
            qid = queued(server)[0]["queue_id"]

            def fast_recorded() -> bool:
                shown = server.cli("queue", "show", qid, "--json", check=True).stdout
                rows = json.loads(shown)["recipients"]
                return any(
                    r["address"] == "f@fast.test" and r["status"] == "delivered" for r in rows
                )

            # The slow DATA lasts 4 s: give the fast row 2.5 s to be recorded as delivered.
            deadline = time.monotonic() + 2.5
            while not (recorded := fast_recorded()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not slow.received, "the slow double answered before the kill"
            server.stop(signal.SIGKILL)
            slow.script.data_delay = 0.0
            restarted = instance(tmp_path, extra).start()
            wait_until(lambda: not queued(restarted), timeout=20, what="an empty queue")
            got_fast = len(fast.messages_to("f@fast.test"))
            got_slow = len(slow.messages_to("s@slow.test"))
            print(f"after kill -9 and restart: fast got {got_fast}, slow got {got_slow}")
            assert (recorded, got_fast, 1 <= got_slow <= 2) == (True, 1, True), (
                f"fast recorded as delivered before the kill: {recorded}; "
                f"fast got {got_fast} (want 1), slow got {got_slow} (want 1 or 2); "
                "before the kill:\n"
                + "\n".join(
                    ln for ln in server.lines if "event=outbound." in ln or "event=queue." in ln
                )
            )
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop(signal.SIGKILL)
            if restarted is not None:
                assert restarted.stop() == 0


# --- point 6: the queue CLI while the server runs ------------------------------------------


def test_queue_list_show_hold_release_retry(world: World) -> None:
    mx(world.dns, "revive.test", DEAD)
    submit(world.a, ["x@revive.test"], "held, then released")
    qid = deferred_id(world.a, "x@revive.test")

    listing = world.a.cli("queue", "list", check=True).stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(qid))
    assert "\tdeferred\t" in line and "x@revive.test (deferred" in line
    shown = world.a.cli("queue", "show", qid, check=True).stdout
    log = shown.split("\nattempts:\n", 1)[1]
    assert "x@revive.test  deferred" in log and "4.4.1 mx.revive.test" in log, shown

    assert world.a.cli("queue", "hold", qid, check=True).stdout.strip() == f"{qid}: held"
    assert queued_for(world.a, "x@revive.test")[0]["state"] == "held"
    with RemoteMTA("127.0.0.23", world.port) as live:
        mx(world.dns, "revive.test", "127.0.0.23")  # the MX works now
        out = world.a.cli("queue", "retry", qid, check=True).stdout
        assert "held" in out, out
        time.sleep(2.5)  # the runner notices the CLI's commits within a second
        assert not live.mails, "a held message was tried"
        assert queued_for(world.a, "x@revive.test")[0]["state"] == "held"

        assert world.a.cli("queue", "release", qid, check=True).stdout.strip() == (
            f"{qid}: released"
        )
        released = time.monotonic()
        # The retry while held already made it due: it may be delivered and gone by now.
        assert world.a.cli("queue", "retry", qid).returncode in (0, 2)
        wait_until(lambda: live.messages_to("x@revive.test"), timeout=5, what="the delivery")
        assert time.monotonic() - released < 3.5
        wait_until(lambda: not queued_for(world.a, "x@revive.test"), timeout=5)
        assert len(live.messages_to("x@revive.test")) == 1


def test_queue_bounce_sends_the_sender_a_dsn(world: World) -> None:
    mx(world.dns, "gone-ops.test", DEAD)
    submit(world.a, ["y@gone-ops.test"], "bounce me by hand")
    qid = deferred_id(world.a, "y@gone-ops.test")
    out = world.a.cli("queue", "bounce", qid, check=True).stdout.strip()
    assert out.startswith(f"{qid}: bounced 1 recipient (DSN pending for 1)"), out
    found = poll(lambda: notices(world.a, "y@gone-ops.test"), timeout=8)
    assert found, (
        "no DSN in alice's INBOX 8 s after `queue bounce`; the queue says:\n"
        + world.a.cli("queue", "list").stdout
        + "\n".join(ln for ln in world.a.lines if qid in ln)
    )
    raw = found[0]
    assert b"bounced by the administrator" in raw
    assert b"Status: 5.0.0" in raw
    wait_until(lambda: not queued_for(world.a, "y@gone-ops.test"), timeout=5)


def test_queue_delete_removes_without_a_dsn(world: World) -> None:
    mx(world.dns, "gone-ops.test", DEAD)
    submit(world.a, ["z@gone-ops.test"], "delete me")
    qid = deferred_id(world.a, "z@gone-ops.test")
    before = len(inbox(world.a, ALICE[0]))
    assert world.a.cli("queue", "delete", qid, check=True).stdout.strip() == f"{qid}: deleted"
    assert not queued_for(world.a, "z@gone-ops.test")
    assert qid not in world.a.cli("queue", "list", check=True).stdout
    time.sleep(2)
    assert len(inbox(world.a, ALICE[0])) == before
    assert not notices(world.a, "z@gone-ops.test")


@pytest.mark.parametrize("command", ["show", "hold", "release", "retry", "delete", "bounce"])
def test_queue_unknown_id_is_bad_input(world: World, command: str) -> None:
    result = world.a.cli("queue", command, "NOSUCHID99")
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "NOSUCHID99" in result.stderr
    assert result.stdout == ""


# --- point 3: connection reuse and the per-destination limit -------------------------------


def test_one_connection_serves_several_messages(world: World) -> None:
    mx(world.dns, "reuse.test", "127.0.0.24")
    with RemoteMTA("127.0.0.24", world.port) as remote:
        for n in range(5):
            submit(world.a, [f"r{n}@reuse.test"], f"reuse {n}")
        wait_until(lambda: len(remote.received) == 5, what="5 deliveries")
        assert remote.connections < 5, f"{remote.connections} connections for 5 messages"
        assert len(remote.mails) == 5


def test_max_per_destination_limits_concurrent_sessions(world: World) -> None:
    mx(world.dns, "busy.test", "127.0.0.25")
    # Each DATA takes 0.3 s: without the limit, deliveries of messages submitted at once
    # would overlap there.
    with RemoteMTA("127.0.0.25", world.port, script=Script(data_delay=0.3)) as remote:
        threads = [
            threading.Thread(target=submit, args=(world.a, [f"b{n}@busy.test"], f"busy {n}"))
            for n in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(lambda: len(remote.received) == 6, what="6 deliveries")
        assert remote.max_in_data == 1
        assert remote.max_open == 1
        assert remote.connections < 6


# --- point 3: an extension the next hop lacks ----------------------------------------------


def test_smtputf8_message_to_a_host_without_smtputf8_bounces_5_6_7(world: World) -> None:
    mx(world.dns, "noutf8.test", "127.0.0.26")
    with RemoteMTA("127.0.0.26", world.port, utf8=False) as remote:
        submit(world.a, ["jürgen@noutf8.test"], "utf8 to a plain host", mail=["SMTPUTF8"])
        raw = wait_until(lambda: notices(world.a, "noutf8.test"), what="the DSN")[0]
        assert b"Status: 5.6.7" in raw, raw.decode("utf-8", "replace")
        assert "jürgen@noutf8.test".encode() in raw
        assert not remote.mails, "a transaction was started anyway"
    assert not queued_for(world.a, "jürgen@noutf8.test")


def test_message_over_the_next_hops_size_bounces_5_3_4(world: World) -> None:
    mx(world.dns, "small.test", "127.0.0.27")
    with RemoteMTA("127.0.0.27", world.port, size_limit=1000) as remote:
        submit(world.a, ["big@small.test"], "too big for them", body=("x" * 70 + "\r\n") * 40)
        raw = wait_until(lambda: notices(world.a, "big@small.test"), what="the DSN")[0]
        assert b"Status: 5.3.4" in raw, raw.decode("utf-8", "replace")
        assert not remote.mails, "a transaction was started anyway"
    assert not queued_for(world.a, "big@small.test")


# --- point 4: a bounce is never bounced ----------------------------------------------------


def test_failure_of_a_null_sender_message_sends_no_dsn(world: World) -> None:
    """A bounce (MAIL FROM:<>) forwarded by an alias to a remote address that refuses it:
    the failure is final and nobody is told."""
    mx(world.dns, "refuse.test", "127.0.0.28")
    world.a.cli("alias", "add", "fwd-null@a.test", "nobody@refuse.test", check=True)
    script = Script(rcpt={"nobody@refuse.test": "550 5.1.1 no such user"})
    with RemoteMTA("127.0.0.28", world.port, script=script) as remote:
        before = len(inbox(world.a, ALICE[0]))
        with smtplib.SMTP("127.0.0.1", world.a.ports["smtp"], timeout=10) as s:
            s.sendmail(
                "",
                ["fwd-null@a.test"],
                message("a bounce", "fwd-null@a.test", "MAILER-DAEMON@elsewhere.test"),
            )
        wait_until(lambda: "nobody@refuse.test" in remote.rcpts, what="the forwarded try")
        wait_until(lambda: not queued_for(world.a, "fwd-null@a.test"), timeout=5)
        time.sleep(1.5)
        assert remote.mails == ["<>"], remote.mails  # the one try, nothing after it
        assert not [m for m in queued(world.a) if m["sender"] == ""]
        assert len(inbox(world.a, ALICE[0])) == before


def test_a_dsn_that_fails_is_not_bounced(world: World) -> None:
    """stranger@refuse.test writes to an alias that forwards to a refused address; the DSN
    to stranger is refused too: it fails for good, and no notice about the notice follows."""
    mx(world.dns, "refuse.test", "127.0.0.28")
    world.a.cli("alias", "add", "fwd-dsn@a.test", "nobody@refuse.test", check=True)
    refused = "550 5.1.1 no such user"
    script = Script(rcpt={"nobody@refuse.test": refused, "stranger@refuse.test": refused})
    with RemoteMTA("127.0.0.28", world.port, script=script) as remote:
        with smtplib.SMTP("127.0.0.1", world.a.ports["smtp"], timeout=10) as s:
            s.sendmail(
                "stranger@refuse.test",
                ["fwd-dsn@a.test"],
                message("to be refused", "fwd-dsn@a.test", "stranger@refuse.test"),
            )
        wait_until(lambda: "stranger@refuse.test" in remote.rcpts, what="the DSN's try")
        wait_until(lambda: not any("refuse.test" in json.dumps(m) for m in queued(world.a)), 5)
        time.sleep(1.5)
        assert remote.mails == ["stranger@refuse.test", "<>"], remote.mails
        assert remote.rcpts == ["nobody@refuse.test", "stranger@refuse.test"], remote.rcpts
        assert not remote.received
