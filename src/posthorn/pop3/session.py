"""One POP3 connection's state machine (RFC 1939): command lines in, responses out.

Sans-socket, not sans-await, like the IMAP session: it awaits the injected directory and store
and writes through an injected `emit`, so RETR streams a large message with back-pressure. The
asyncio shell (`posthorn.pop3.server`) owns the socket, the timeout, STLS's handshake and the
reading of AUTH's continuation lines.

States (RFC 1939 §3): AUTHORIZATION → TRANSACTION → UPDATE. Handlers are looked up in
`_COMMANDS` with the states they are valid in.

The maildrop (RFC 1939 §5) is INBOX as it was at login: a snapshot of UIDs and stored sizes
that never changes during the session. Semantics chosen here:

- One POP3 session per account at a time (`MaildropLocks`, per process): a second login gets
  ``-ERR [IN-USE]`` (RFC 2449 §8.1.1). The lock goes with QUIT, a dropped connection, a
  timeout or an error (`close`). IMAP sessions are not locked out: they see POP3's deletions
  as EXPUNGEs through the store's change feed.
- DELE only marks; QUIT in TRANSACTION enters UPDATE and expunges the marked UIDs
  (RFC 1939 §6). Any other ending deletes nothing.
- A message expunged elsewhere (IMAP) during the session stays listed (the snapshot) but RETR
  and TOP answer ``-ERR``; it is absent from the next session's maildrop.
- UIDL (RFC 1939 §7) is ``<UIDVALIDITY>.<UID>``: both survive restarts and the pair is never
  reused for another message (RFC 9051 §2.3.1.1), so clients that "leave mail on server" do
  not download anything twice.
- Sizes are the octets RETR sends before dot-stuffing: the stored bytes with every bare LF
  turned into CRLF (RFC 1939 §11). SMTP and LMTP refuse bare LF, but IMAP APPEND and import
  can store it, so each message is scanned once per process (`SizeCache`) when a size is
  first asked for.
- RETR does not set ``\\Seen``: POP3 has no flags, and like Dovecot's default we leave the
  IMAP view of a message unchanged by downloading it.
"""

from __future__ import annotations

import asyncio
import enum
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from posthorn import sasl
from posthorn.log import bind, get_logger
from posthorn.policy.limits import AuthThrottle
from posthorn.pop3 import protocol
from posthorn.pop3.protocol import (
    Command,
    CRLFNormalizer,
    DotStuffer,
    LineTooLong,
    OctetCounter,
    ParseError,
    TopFilter,
)
from posthorn.store.base import MailStore, MessageMeta, NoSuchMessage, StoreError

__all__ = [
    "Accounts",
    "Connection",
    "Limits",
    "MaildropLocks",
    "Next",
    "Outcome",
    "Session",
    "SizeCache",
    "State",
]

log = get_logger("posthorn.pop3")

CHUNK = 256 * 1024  # message octets read from the store at a time (RETR, TOP, sizes)
SCAN_AHEAD = 32  # messages whose sizes are counted at once


class Account(Protocol):
    @property
    def address(self) -> str: ...


class Accounts(Protocol):
    async def authenticate(self, address: str, password: str) -> Account | None: ...


@dataclass
class Connection:
    """Facts about the connection the session cannot learn from commands."""

    client_ip: str
    loopback: bool
    tls: str | None = None


@dataclass(frozen=True)
class Limits:
    plaintext_auth_on_loopback: bool = False
    max_bad_commands: int = 10


class Next(enum.Enum):
    """What the shell does after the session answered a line."""

    CONTINUE = "continue"
    CLOSE = "close"
    STLS = "stls"  # discard buffered input, then the TLS handshake (RFC 2595 §4)
    SASL = "sasl"  # read one line and pass it to `sasl_line`


@dataclass
class Outcome:
    next: Next = Next.CONTINUE
    delay: float = 0.0  # seconds to wait before reading on (failed logins)


class State(enum.Enum):
    AUTHORIZATION = 1
    TRANSACTION = 2
    UPDATE = 3


class MaildropLocks:
    """Accounts with an open POP3 session in this process (RFC 1939 §8: exclusive access).
    Shared by the ``pop3`` and ``pop3s`` listeners."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def try_acquire(self, account: str) -> bool:
        if account in self._held:
            return False
        self._held.add(account)
        return True

    def release(self, account: str) -> None:
        self._held.discard(account)

    def __contains__(self, account: object) -> bool:
        return account in self._held


class SizeCache:
    """POP3 octet counts by (account, mailbox id, UIDVALIDITY, UID), least recently used out
    first. Message bytes never change under a UID, so an entry never goes stale."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._sizes: OrderedDict[tuple[str, int, int, int], int] = OrderedDict()

    def get(self, key: tuple[str, int, int, int]) -> int | None:
        size = self._sizes.get(key)
        if size is not None:
            self._sizes.move_to_end(key)
        return size

    def put(self, key: tuple[str, int, int, int], size: int) -> None:
        self._sizes[key] = size
        self._sizes.move_to_end(key)
        while len(self._sizes) > self.max_entries:
            self._sizes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sizes)


@dataclass
class _Maildrop:
    account: str
    mailbox_id: int
    uidvalidity: int
    messages: list[MessageMeta]
    deleted: set[int]  # message numbers marked by DELE
    sizes: dict[int, int]  # message number -> POP3 octets, filled on demand


_A, _T = State.AUTHORIZATION, State.TRANSACTION

_SASL_CODE = "AUTH"  # RFC 3206 §4: the credentials were refused


class Session:
    def __init__(
        self,
        conn: Connection,
        *,
        accounts: Accounts,
        store: MailStore,
        limits: Limits,
        throttle: AuthThrottle,
        locks: MaildropLocks,
        sizes: SizeCache,
        tls_available: bool,
        emit: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.conn = conn
        self.accounts = accounts
        self.store = store
        self.limits = limits
        self.throttle = throttle
        self.locks = locks
        self.sizes = sizes
        self.tls_available = tls_available
        self._emit = emit
        self.state = State.AUTHORIZATION
        self.bad_commands = 0
        self.user: str | None = None  # the name given by USER, waiting for PASS
        self.maildrop: _Maildrop | None = None
        self._sasl: sasl.Exchange | None = None

    # --- what the shell asks ----------------------------------------------------------------

    def greeting(self) -> bytes:
        # No APOP timestamp: APOP (RFC 1939 §7) needs the clear password on the server.
        return protocol.ok("posthorn POP3 server ready")

    def capabilities(self) -> list[str]:
        """RFC 2449 §5; what is usable now (the list shrinks after login and without TLS)."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
        if self.state is _A:
            if self.tls_available and self.conn.tls is None:
                caps.append("STLS")
            if self._plaintext_ok():
                caps += ["USER", "SASL " + " ".join(sasl.MECHANISMS)]
        caps.append("IMPLEMENTATION posthorn")
        return caps

    def _plaintext_ok(self) -> bool:
        """RFC 2595 §2 / RFC 8314: passwords only under TLS, or on loopback when allowed."""
        return self.conn.tls is not None or (
            self.conn.loopback and self.limits.plaintext_auth_on_loopback
        )

    def tls_started(self, description: str) -> None:
        self.conn.tls = description
        self.user = None  # RFC 2595 §4: forget what the client said before TLS

    async def emit(self, data: bytes) -> None:
        await self._emit(data)

    # --- dispatch ---------------------------------------------------------------------------

    async def line(self, line: bytes | LineTooLong) -> Outcome:
        """One command line (without its CRLF), or notice that one was too long."""
        if isinstance(line, LineTooLong):
            return await self._bad("command line too long")
        try:
            cmd = protocol.parse_command(line)
        except ParseError as e:
            return await self._bad(str(e))
        entry = _COMMANDS.get(cmd.name)
        if entry is None:
            return await self._bad("unknown command")
        handler, states = entry
        if self.state not in states:
            where = "before login" if self.state is _A else "after login"
            return await self._bad(f"{cmd.name} not allowed {where}")
        try:
            return await handler(self, cmd)
        except ParseError as e:
            return await self._bad(str(e))

    async def _bad(self, text: str) -> Outcome:
        """Unknown, malformed and out-of-state commands are counted; too many end the
        connection without UPDATE (no deletion)."""
        self.bad_commands += 1
        if self.bad_commands >= self.limits.max_bad_commands:
            await self.emit(protocol.err("too many bad commands; closing"))
            return Outcome(Next.CLOSE)
        await self.emit(protocol.err(text))
        return Outcome()

    async def close(self) -> None:
        """The connection is over, whatever the reason: release the maildrop, delete nothing."""
        if self.maildrop is not None:
            self.locks.release(self.maildrop.account)
            self.maildrop = None

    # --- any state ----------------------------------------------------------------------------

    async def _capa(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        first = protocol.ok("capability list follows")
        await self.emit(protocol.multiline(first, [c.encode() for c in self.capabilities()]))
        return Outcome()

    async def _quit(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        drop = self.maildrop
        if drop is None:
            await self.emit(protocol.ok("posthorn signing off"))
            return Outcome(Next.CLOSE)
        # RFC 1939 §6: the UPDATE state removes what DELE marked, then the session ends.
        self.state = State.UPDATE
        uids = sorted(drop.messages[n - 1].uid for n in drop.deleted)
        try:
            if uids:
                await self.store.expunge(
                    drop.account, drop.mailbox_id, _ranges(uids), only_deleted=False
                )
        except StoreError:
            log.exception("pop3.update_failed", count=len(uids))
            await self.close()
            await self.emit(protocol.err("some deleted messages not removed", "SYS/TEMP"))
            return Outcome(Next.CLOSE)
        log.info("pop3.update", deleted=len(uids))
        await self.close()
        left = len(drop.messages) - len(uids)
        await self.emit(protocol.ok(f"posthorn signing off ({left} messages left)"))
        return Outcome(Next.CLOSE)

    # --- AUTHORIZATION (RFC 1939 §4, RFC 5034, RFC 2595) -------------------------------------

    async def _stls(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        if not self.tls_available or self.conn.tls is not None:
            return await self._bad("TLS is already on" if self.conn.tls else "TLS not available")
        await self.emit(protocol.ok("begin TLS negotiation"))
        return Outcome(Next.STLS)

    def _refuse_plaintext(self) -> bytes:
        # RFC 3206 §4 SYS/PERM: retrying will not help until the client uses TLS; AUTH would
        # make clients ask for the password again, which is not what is wrong.
        return protocol.err("use STLS or port 995 to log in", "SYS/PERM")

    async def _user(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 1:
            raise ParseError("USER takes one name")
        if not self._plaintext_ok():
            await self.emit(self._refuse_plaintext())
            return Outcome()
        # The same answer whether or not the account exists (RFC 1939 §13).
        self.user = cmd.args[0]
        await self.emit(protocol.ok("send PASS"))
        return Outcome()

    async def _pass(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 1:
            raise ParseError("PASS takes the password")
        if not self._plaintext_ok():
            await self.emit(self._refuse_plaintext())
            return Outcome()
        user, self.user = self.user, None
        if user is None:
            return await self._bad("send USER first")
        return await self._login(user, cmd.args[0], "USER")

    async def _auth(self, cmd: Command) -> Outcome:
        if not cmd.args:  # RFC 1734 §2 listing, still sent by some clients
            mechs = list(sasl.MECHANISMS) if self._plaintext_ok() else []
            await self.emit(protocol.multiline(protocol.ok(), [m.encode() for m in mechs]))
            return Outcome()
        if len(cmd.args) > 2:
            raise ParseError("AUTH takes a mechanism and an optional initial response")
        if not self._plaintext_ok():
            await self.emit(self._refuse_plaintext())
            return Outcome()
        self.user = None
        try:
            exchange = sasl.new_exchange(cmd.args[0])
        except sasl.SASLError:
            await self.emit(protocol.err("unsupported mechanism"))
            return Outcome()
        self._sasl = exchange
        try:
            # RFC 5034 §4: an initial response is allowed; "=" stands for an empty one.
            initial = sasl.decode_response(cmd.args[1].encode()) if len(cmd.args) == 2 else None
            return await self._sasl_result(exchange.start(initial))
        except sasl.SASLCancelled:
            return await self._sasl_end("authentication cancelled")
        except sasl.SASLError as e:
            return await self._sasl_end(f"authentication failed: {e}")

    async def sasl_line(self, line: bytes | LineTooLong) -> Outcome:
        """A client response line during AUTH (RFC 5034 §4); ``*`` cancels."""
        exchange = self._sasl
        assert exchange is not None
        if isinstance(line, LineTooLong):
            return await self._sasl_end("authentication response too long")
        try:
            return await self._sasl_result(exchange.step(sasl.decode_response(line)))
        except sasl.SASLCancelled:
            return await self._sasl_end("authentication cancelled")
        except sasl.SASLError as e:
            return await self._sasl_end(f"authentication failed: {e}")

    async def _sasl_end(self, text: str) -> Outcome:
        self._sasl = None
        await self.emit(protocol.err(text))
        return Outcome()

    async def _sasl_result(self, result: bytes | sasl.Credentials) -> Outcome:
        if isinstance(result, bytes):
            await self.emit(protocol.continuation(result))
            return Outcome(Next.SASL)
        self._sasl = None
        if not sasl.authzid_allowed(result):
            await self.emit(protocol.err("proxy login not allowed", _SASL_CODE))
            return Outcome()
        return await self._login(result.authcid, result.password, "AUTH")

    async def _login(self, user: str, password: str, how: str) -> Outcome:
        ip = self.conn.client_ip
        if self.throttle.locked(ip, user):
            # Not checked, so not AUTH (which says the credentials are wrong): RFC 3206 §4
            # SYS/TEMP says "try later", which is what a lockout means.
            log.warning("auth.locked", user=user, ip=ip)
            await self.emit(protocol.err("too many failed logins; try later", "SYS/TEMP"))
            return Outcome()
        account = await self.accounts.authenticate(user, password)
        if account is None:
            self.throttle.failure(ip, user)
            log.info("auth.failed", user=user, how=how)
            await self.emit(protocol.err("invalid credentials", _SASL_CODE))
            return Outcome(delay=self.throttle.delay(ip, user))
        self.throttle.success(ip, user)
        address = account.address
        if not self.locks.try_acquire(address):
            log.info("pop3.in_use", account=address)
            await self.emit(protocol.err("maildrop already in use by another session", "IN-USE"))
            return Outcome()
        try:
            await self.store.ensure_account(address)
            inbox = await self.store.get_mailbox(address, "INBOX")
            messages = await self.store.fetch(address, inbox.id)
        except BaseException:
            self.locks.release(address)
            raise
        self.maildrop = _Maildrop(address, inbox.id, inbox.uidvalidity, messages, set(), {})
        self.state = State.TRANSACTION
        bind(account=address)
        log.info("auth.ok", how=how, messages=len(messages))
        await self.emit(protocol.ok(f"maildrop locked and ready, {len(messages)} messages"))
        return Outcome()

    # --- TRANSACTION (RFC 1939 §5) ------------------------------------------------------------

    def _drop(self) -> _Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _number(self, text: str) -> int:
        """A message number that exists and is not marked deleted (RFC 1939 §5)."""
        drop = self._drop()
        n = protocol.message_number(text)
        if not 1 <= n <= len(drop.messages) or n in drop.deleted:
            raise _NoSuchMessage
        return n

    async def _size(self, n: int) -> int:
        """Message n's octets as RETR sends them before dot-stuffing (RFC 1939 §11)."""
        drop = self._drop()
        size = drop.sizes.get(n)
        if size is not None:
            return size
        meta = drop.messages[n - 1]
        key = (drop.account, drop.mailbox_id, drop.uidvalidity, meta.uid)
        size = self.sizes.get(key)
        if size is None:
            size = await self._count(meta)
        drop.sizes[n] = size
        return size

    async def _count(self, meta: MessageMeta) -> int:
        drop = self._drop()
        counter = OctetCounter()
        try:
            for start in range(0, meta.size, CHUNK):
                counter.feed(
                    await self.store.read(drop.account, drop.mailbox_id, meta.uid, start, CHUNK)
                )
        except NoSuchMessage:
            return meta.size  # expunged elsewhere: RETR will say so; the count is moot
        key = (drop.account, drop.mailbox_id, drop.uidvalidity, meta.uid)
        self.sizes.put(key, counter.octets)
        return counter.octets

    async def _all_sizes(self, numbers: list[int]) -> list[int]:
        """Sizes of many messages, uncached ones counted `SCAN_AHEAD` at a time (the store
        reads concurrently, so a first STAT does not wait for each read in turn)."""
        for i in range(0, len(numbers), SCAN_AHEAD):
            await asyncio.gather(*(self._size(n) for n in numbers[i : i + SCAN_AHEAD]))
        return [await self._size(n) for n in numbers]

    def _live(self) -> list[int]:
        drop = self._drop()
        return [n for n in range(1, len(drop.messages) + 1) if n not in drop.deleted]

    async def _stat(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        live = self._live()
        total = sum(await self._all_sizes(live))
        await self.emit(protocol.ok(f"{len(live)} {total}"))
        return Outcome()

    async def _list(self, cmd: Command) -> Outcome:
        return await self._listing(cmd, self._size)

    async def _uidl(self, cmd: Command) -> Outcome:
        return await self._listing(cmd, self._unique_id)

    async def _unique_id(self, n: int) -> str:
        drop = self._drop()
        return f"{drop.uidvalidity}.{drop.messages[n - 1].uid}"

    async def _listing(self, cmd: Command, value: Callable[[int], Awaitable[object]]) -> Outcome:
        """LIST and UIDL (RFC 1939 §5, §7): one message, or a multi-line scan listing."""
        if len(cmd.args) > 1:
            raise ParseError(f"{cmd.name} takes at most one message number")
        if cmd.args:
            try:
                n = self._number(cmd.args[0])
            except _NoSuchMessage:
                await self.emit(protocol.err("no such message"))
                return Outcome()
            await self.emit(protocol.ok(f"{n} {await value(n)}"))
            return Outcome()
        live = self._live()
        if value == self._size:
            await self._all_sizes(live)
        lines = [f"{n} {await value(n)}".encode() for n in live]
        await self.emit(protocol.multiline(protocol.ok(f"{len(lines)} messages"), lines))
        return Outcome()

    async def _retr(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 1:
            raise ParseError("RETR takes one message number")
        return await self._send(cmd.args[0], None)

    async def _top(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 2:
            raise ParseError("TOP takes a message number and a line count")
        if not cmd.args[1].isdigit() or len(cmd.args[1]) > 10:
            raise ParseError("invalid line count")
        return await self._send(cmd.args[0], int(cmd.args[1]))

    async def _send(self, number: str, top: int | None) -> Outcome:
        """RETR (``top`` None) and TOP: streamed from the store in chunks, CRLF-normalised,
        cut by `TopFilter` for TOP, dot-stuffed (RFC 1939 §3), never held whole."""
        try:
            n = self._number(number)
        except _NoSuchMessage:
            await self.emit(protocol.err("no such message"))
            return Outcome()
        drop = self._drop()
        meta = drop.messages[n - 1]
        try:
            chunk = await self.store.read(drop.account, drop.mailbox_id, meta.uid, 0, CHUNK)
        except NoSuchMessage:
            await self.emit(protocol.err("message was deleted by another session"))
            return Outcome()
        await self.emit(protocol.ok("message follows"))
        crlf, stuff = CRLFNormalizer(), DotStuffer()
        cut = TopFilter(top) if top is not None else None
        offset = 0
        while True:
            offset += len(chunk)
            data = crlf.feed(chunk) if chunk else crlf.finish()
            if cut is not None:
                data = cut.feed(data)
            await self.emit(stuff.feed(data))
            if not chunk or (cut is not None and cut.done):
                break
            if offset >= meta.size:
                chunk = b""
                continue
            try:
                chunk = await self.store.read(
                    drop.account, drop.mailbox_id, meta.uid, offset, CHUNK
                )
            except NoSuchMessage:
                # Expunged elsewhere in the middle of the transfer: the +OK is out, so no
                # -ERR can follow; end the connection (deleting nothing) rather than lie.
                log.warning("pop3.message_vanished", uid=meta.uid)
                return Outcome(Next.CLOSE)
        await self.emit(stuff.finish())
        return Outcome()

    async def _dele(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 1:
            raise ParseError("DELE takes one message number")
        drop = self._drop()
        n = protocol.message_number(cmd.args[0])
        if not 1 <= n <= len(drop.messages):
            await self.emit(protocol.err("no such message"))
        elif n in drop.deleted:
            await self.emit(protocol.err(f"message {n} already deleted"))
        else:
            drop.deleted.add(n)  # RFC 1939 §5: only marked; UPDATE removes it
            await self.emit(protocol.ok(f"message {n} deleted"))
        return Outcome()

    async def _noop(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        await self.emit(protocol.ok())
        return Outcome()

    async def _rset(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        drop = self._drop()
        drop.deleted.clear()
        await self.emit(protocol.ok(f"maildrop has {len(drop.messages)} messages"))
        return Outcome()


class _NoSuchMessage(Exception):
    pass


def _no_args(cmd: Command) -> None:
    if cmd.args:
        raise ParseError(f"{cmd.name} takes no arguments")


def _ranges(uids: list[int]) -> list[tuple[int, int]]:
    """Ascending UIDs as inclusive (first, last) runs."""
    out: list[tuple[int, int]] = []
    for uid in uids:
        if out and out[-1][1] == uid - 1:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return out


Handler = Callable[[Session, Command], Awaitable[Outcome]]

_COMMANDS: dict[str, tuple[Handler, frozenset[State]]] = {
    "CAPA": (Session._capa, frozenset({_A, _T})),
    "QUIT": (Session._quit, frozenset({_A, _T})),
    "STLS": (Session._stls, frozenset({_A})),
    "USER": (Session._user, frozenset({_A})),
    "PASS": (Session._pass, frozenset({_A})),
    "AUTH": (Session._auth, frozenset({_A})),
    "STAT": (Session._stat, frozenset({_T})),
    "LIST": (Session._list, frozenset({_T})),
    "UIDL": (Session._uidl, frozenset({_T})),
    "RETR": (Session._retr, frozenset({_T})),
    "TOP": (Session._top, frozenset({_T})),
    "DELE": (Session._dele, frozenset({_T})),
    "NOOP": (Session._noop, frozenset({_T})),
    "RSET": (Session._rset, frozenset({_T})),
}
