"""Byte-level IMAP dialogues against the real session, store and directory, without sockets.

`Dialogue.send` feeds client octets through the real `CommandReader` into the real `Session`
and returns everything the server would have written, exactly as bytes, so tests compare
whole responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from posthorn.directory import Directory, DirectoryDB, Hasher, HashParams
from posthorn.imap.session import Connection, Limits, Next, Outcome, Session
from posthorn.imap.wire import CommandReader, Continue, LineTooLong, Reject
from posthorn.policy.limits import AuthThrottle
from posthorn.store.sqlite import SQLiteMailStore

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "pw-alice"


@dataclass
class World:
    directory: Directory
    store: SQLiteMailStore
    throttle: AuthThrottle


async def open_world(tmp_path: Path) -> AsyncIterator[World]:
    with DirectoryDB.in_data_dir(tmp_path, hasher=Hasher(CHEAP)) as db:
        db.add_domain("example.test")
        db.add_account("alice@example.test", PASSWORD)
        db.add_account("bob@example.test", "pw-bob")
    directory = await Directory.in_data_dir(tmp_path, hasher=Hasher(CHEAP))
    store = SQLiteMailStore(tmp_path)
    await store.open()
    yield World(directory, store, AuthThrottle())
    await store.close()
    await directory.close()


class Dialogue:
    def __init__(
        self,
        world: World,
        *,
        tls: str | None = None,
        loopback: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self.out: list[bytes] = []
        self.session = Session(
            Connection("127.0.0.1" if loopback else "192.0.2.1", loopback, tls),
            hostname="mail.example.test",
            accounts=world.directory,
            store=world.store,
            limits=limits or Limits(append_limit=10_000, plaintext_auth_on_loopback=True),
            throttle=world.throttle,
            tls_available=True,
            emit=self._emit,
        )
        self.reader = CommandReader(literal_limit=self.session.literal_limit)
        self.mode = Next.CONTINUE
        self.closed = False
        self.delays: list[float] = []

    async def _emit(self, data: bytes) -> None:
        self.out.append(data)

    def greeting(self) -> bytes:
        return self.session.greeting()

    async def send(self, data: bytes) -> bytes:
        """Feed octets; return what the server answers before it needs more input."""
        self.reader.feed(data)
        while not self.closed:
            if self.mode is Next.SASL:
                line = self.reader.next_line(4096)
                if line is None:
                    break
                if isinstance(line, LineTooLong):
                    line = b"*"
                await self._outcome(await self.session.sasl_line(line))
                continue
            if self.mode is Next.IDLE:
                line = self.reader.next_line(64)
                if line is None:
                    await self.session.idle_updates()
                    break
                if isinstance(line, LineTooLong):
                    line = b""
                await self._outcome(await self.session.idle_done(line))
                continue
            event = self.reader.next_event()
            if event is None:
                break
            if isinstance(event, Continue):
                self.out.append(b"+ OK\r\n")
            elif isinstance(event, Reject):
                code = f"[{event.code}] " if event.code else ""
                self.out.append(
                    f"{event.tag or '*'} {event.status} {code}{event.text}\r\n".encode()
                )
                if event.close:
                    self.closed = True
            else:
                await self._outcome(await self.session.command(event))
        out, self.out = b"".join(self.out), []
        return out

    async def _outcome(self, outcome: Outcome) -> None:
        if outcome.delay:
            self.delays.append(outcome.delay)
        self.mode = outcome.next if outcome.next in (Next.SASL, Next.IDLE) else Next.CONTINUE
        if outcome.next is Next.CLOSE:
            self.closed = True

    async def cmd(self, line: str | bytes) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        return await self.send(data + b"\r\n")

    async def login(self, user: str = "alice@example.test", password: str = PASSWORD) -> None:
        out = await self.cmd(f'L1 LOGIN {user} "{password}"')
        assert out.startswith(b"L1 OK"), out
