"""One IMAP connection's state machine: commands in, responses out (RFC 9051, RFC 3501).

Sans-socket, not sans-await: the session awaits the injected directory and store, and writes
through an injected `emit` so a large FETCH streams with back-pressure instead of piling up in
memory. The asyncio shell (`posthorn.imap.server`) owns the socket, the timeouts, STARTTLS,
AUTHENTICATE's continuation lines and IDLE's waiting; everything the client can observe about
commands is decided here.

States (RFC 9051 §3): not authenticated → authenticated → selected → logout. Handlers are
looked up in `_COMMANDS` with the states they are valid in; anything else is ``BAD``.

Untagged updates from other sessions are delivered at the end of each command
(`_updates`), except that EXPUNGE waits while a FETCH, STORE or SEARCH runs (RFC 9051 §7.5.1).
"""

from __future__ import annotations

import enum
import errno
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from posthorn import sasl
from posthorn.imap import response
from posthorn.imap.fetch import FetchFailed, Kind, parse_fetch_items, render_fetch
from posthorn.imap.names import mailbox_name
from posthorn.imap.search import (
    Candidate,
    SearchQuery,
    format_search,
    needs,
    parse_search,
    run_search,
    save_result,
)
from posthorn.imap.selected import SelectedView
from posthorn.imap.sequence import SequenceSet, format_sequence, sequence_arg
from posthorn.imap.sort import format_sort, parse_sort, run_sort
from posthorn.imap.sort import needs as sort_needs
from posthorn.imap.thread import format_thread, parse_thread, run_thread
from posthorn.imap.thread import needs as thread_needs
from posthorn.imap.values import (
    Atom,
    Command,
    ParseError,
    Refused,
    String,
    Value,
    astring,
    astring_bytes,
    atom,
    number,
    paren_list,
)
from posthorn.log import bind, get_logger
from posthorn.policy.limits import AuthThrottle
from posthorn.store.base import (
    SYSTEM_FLAGS,
    ChangeKind,
    ChangesLost,
    ChangeSubscription,
    FlagMode,
    MailboxExists,
    MailboxNotAllowed,
    MailStore,
    MessageMeta,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StoreError,
    canonical_flag,
)

log = get_logger("posthorn.imap")

FETCH_BATCH = 500  # messages loaded from the store at once while answering a FETCH
MAX_ID_PAIRS = 30  # RFC 2971 §3.3
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # answered NO [OVERQUOTA]


class Account(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def quota_bytes(self) -> int | None: ...


class Accounts(Protocol):
    async def authenticate(self, address: str, password: str) -> Account | None: ...

    async def find_account(self, address: str) -> Account | None: ...


@dataclass
class Connection:
    """Facts about the connection the session cannot learn from commands."""

    client_ip: str
    loopback: bool
    tls: str | None = None


@dataclass(frozen=True)
class Limits:
    append_limit: int = 50 * 1024 * 1024
    preauth_literal: int = 8 * 1024  # RFC 7888 §4: keep pre-login literals small
    other_literal: int = 1024 * 1024  # SEARCH strings, mailbox names after login
    plaintext_auth_on_loopback: bool = False


class Next(enum.Enum):
    """What the shell does after the session answered a command."""

    CONTINUE = "continue"
    CLOSE = "close"
    STARTTLS = "starttls"
    SASL = "sasl"  # read one line and pass it to `sasl_line`
    IDLE = "idle"  # wait for DONE and for changes (`idle_wait`, `idle_updates`, `idle_done`)
    COMPRESS = "compress"  # deflate everything after this command's answer (RFC 4978)


@dataclass
class Outcome:
    next: Next = Next.CONTINUE
    delay: float = 0.0  # seconds to wait before sending the answer (failed logins)


class State(enum.Enum):
    NOT_AUTHENTICATED = 1
    AUTHENTICATED = 2
    SELECTED = 3
    LOGOUT = 4


_N, _A, _S = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED
_ANY = frozenset({_N, _A, _S})
_AUTHED = frozenset({_A, _S})
_SELECTED = frozenset({_S})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_TIME = re.compile(
    r"^([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$"
)
_STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
    }
)
_ENABLEABLE = ("CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT")


class Session:
    def __init__(
        self,
        conn: Connection,
        *,
        hostname: str,
        accounts: Accounts,
        store: MailStore,
        limits: Limits,
        throttle: AuthThrottle,
        tls_available: bool,
        emit: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.conn = conn
        self.hostname = hostname
        self.accounts = accounts
        self.store = store
        self.limits = limits
        self.throttle = throttle
        self.tls_available = tls_available
        self._emit = emit
        self.state = State.NOT_AUTHENTICATED
        self.account: str | None = None
        self.quota: int | None = None
        self.selected: SelectedView | None = None
        self.changes: ChangeSubscription | None = None
        self.enabled: set[str] = set()
        self.saved: list[int] = []  # RFC 5182 SEARCHRES, UIDs
        self._sasl: sasl.Exchange | None = None
        self._sasl_tag = ""
        self._idle_tag = ""
        self._running = ""  # name of the command being answered (for the EXPUNGE rule)
        self.compressed = False

    # --- what the shell asks ----------------------------------------------------------------

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or self.rev2

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def greeting(self) -> bytes:
        return b"* OK [CAPABILITY " + self.capabilities().encode() + b"] posthorn ready\r\n"

    def literal_limit(self, name: str) -> int:
        """The largest literal accepted for a command now (checked before any octet of it is
        read: `posthorn.imap.wire`)."""
        if self.state is State.NOT_AUTHENTICATED:
            return self.limits.preauth_literal
        if name == "APPEND":
            return self.limits.append_limit
        return self.limits.other_literal

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"]
        if self.state is State.NOT_AUTHENTICATED:
            if self.tls_available and self.conn.tls is None:
                caps.append("STARTTLS")
            if self._plaintext_ok():
                caps += [f"AUTH={m}" for m in sasl.MECHANISMS]
            else:
                caps.append("LOGINDISABLED")
            return " ".join(caps)
        caps += [
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SPECIAL-USE",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SEARCHRES",
            "WITHIN",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=REFERENCES",
            "THREAD=ORDEREDSUBJECT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
            "UTF8=ACCEPT",
            "MULTIAPPEND",
            f"APPENDLIMIT={self.limits.append_limit}",
            "BINARY",
            "STATUS=SIZE",
            "COMPRESS=DEFLATE",
        ]
        return " ".join(caps)

    def _plaintext_ok(self) -> bool:
        """RFC 9051 §6.2.3 / RFC 8314: passwords only under TLS, or on loopback when allowed."""
        return self.conn.tls is not None or (
            self.conn.loopback and self.limits.plaintext_auth_on_loopback
        )

    async def emit(self, data: bytes) -> None:
        await self._emit(data)

    # --- dispatch ---------------------------------------------------------------------------

    async def command(self, cmd: Command) -> Outcome:
        entry = _COMMANDS.get(cmd.name)
        if entry is None:
            await self.emit(response.tagged(cmd.tag, "BAD", f"unknown command {cmd.name[:40]}"))
            return Outcome()
        handler, states = entry
        if self.state not in states:
            await self.emit(
                response.tagged(cmd.tag, "BAD", f"{cmd.name} not allowed {self._state_text()}")
            )
            return Outcome()
        self._running = cmd.name
        try:
            return await handler(self, cmd)
        except ParseError as e:
            await self.emit(response.tagged(cmd.tag, "BAD", e.message, e.code))
        except Refused as e:
            await self._updates()
            await self.emit(response.tagged(cmd.tag, "NO", e.message, e.code))
        except NoSuchMailbox:
            await self._updates()
            await self.emit(response.tagged(cmd.tag, "NO", "no such mailbox", "NONEXISTENT"))
        except MailboxExists:
            await self.emit(response.tagged(cmd.tag, "NO", "mailbox exists", "ALREADYEXISTS"))
        except MailboxNotAllowed as e:
            await self.emit(response.tagged(cmd.tag, "NO", str(e) or "not allowed", "CANNOT"))
        except QuotaExceeded:
            await self.emit(response.tagged(cmd.tag, "NO", "quota exceeded", "OVERQUOTA"))
        except FetchFailed as e:
            await self.emit(response.tagged(cmd.tag, "NO", e.message, e.code))
        except OSError as e:
            # The session's state is intact, so this command fails and the next one may work.
            log.exception("imap.storage_error", command=cmd.name)
            if e.errno in _OUT_OF_SPACE:
                # RFC 5530 §3 OVERQUOTA: no room for what the command would add. Dovecot
                # answers a full disk the same way; SERVERBUG would blame a bug that is not
                # there, and the client may retry once space returns.
                await self.emit(
                    response.tagged(cmd.tag, "NO", "not enough disk space", "OVERQUOTA")
                )
            else:
                # A message file the store cannot read (corrupt, truncated or missing blob).
                await self.emit(
                    response.tagged(cmd.tag, "NO", "message storage error", "SERVERBUG")
                )
        except MailboxGone:
            await self.emit(b"* BYE [NONEXISTENT] the selected mailbox was deleted\r\n")
            return Outcome(Next.CLOSE)
        finally:
            self._running = ""
        return Outcome()

    def _state_text(self) -> str:
        return {
            _N: "before login",
            _A: "without a selected mailbox",
            _S: "with a mailbox selected",
        }.get(self.state, "now")

    async def _ok(self, tag: str, text: str, code: str | None = None) -> Outcome:
        await self._updates()
        await self.emit(response.tagged(tag, "OK", text, code))
        return Outcome()

    async def _updates(self) -> None:
        """Send what other sessions changed, if the change feed said anything did."""
        view = self.selected
        if view is None:
            return
        self._drain_changes()
        if not view.dirty and not (view.pending_expunge and self._expunges_allowed()):
            return
        try:
            lines = await view.sync(
                expunges_allowed=self._expunges_allowed(),
                condstore=self.condstore,
                qresync=self.qresync,
                rev2=self.rev2,
            )
        except NoSuchMailbox:
            raise MailboxGone from None
        for line in lines:
            await self.emit(line)

    def _expunges_allowed(self) -> bool:
        # RFC 9051 §7.5.1 names FETCH, STORE and SEARCH; SORT and THREAD answer in message
        # numbers too (RFC 5256), so they wait as well. The UID forms may see expunges.
        return self._running not in ("FETCH", "STORE", "SEARCH", "SORT", "THREAD")

    def _drain_changes(self) -> None:
        view, sub = self.selected, self.changes
        if view is None or sub is None:
            return
        try:
            while (change := sub.get_nowait()) is not None:
                if change.mailbox_id == view.id and change.kind is not ChangeKind.MAILBOXES:
                    view.dirty = True
        except ChangesLost:
            view.dirty = True

    # --- any state (RFC 9051 §6.1) ------------------------------------------------------------

    async def _capability(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        await self.emit(response.untagged("CAPABILITY " + self.capabilities()))
        return await self._ok(cmd.tag, "CAPABILITY completed")

    async def _noop(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        if self.selected is not None:
            self.selected.dirty = True
        return await self._ok(cmd.tag, f"{cmd.name} completed")

    async def _logout(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        await self.emit(b"* BYE posthorn logging out\r\n")
        await self.emit(response.tagged(cmd.tag, "OK", "LOGOUT completed"))
        await self.close()
        self.state = State.LOGOUT
        return Outcome(Next.CLOSE)

    async def _id(self, cmd: Command) -> Outcome:
        """RFC 2971: we log what the client says about itself and say who we are."""
        if len(cmd.args) != 1:
            raise ParseError("ID takes one argument: NIL or a list")
        arg = cmd.args[0]
        if isinstance(arg, tuple):
            if len(arg) % 2 or len(arg) > 2 * MAX_ID_PAIRS:
                raise ParseError("ID list must hold at most 30 field/value pairs")
            fields = {}
            for k, v in zip(arg[::2], arg[1::2], strict=True):
                key = astring(k)[:30]
                if not (isinstance(v, Atom) and v.upper() == "NIL"):
                    fields[key] = astring(v)[:100]
            log.info("imap.client_id", **{k.lower(): v for k, v in list(fields.items())[:5]})
        elif not (isinstance(arg, Atom) and arg.upper() == "NIL"):
            raise ParseError("ID takes NIL or a parenthesised list")
        await self.emit(b'* ID ("name" "posthorn" "vendor" "posthorn")\r\n')
        return await self._ok(cmd.tag, "ID completed")

    # --- not authenticated (RFC 9051 §6.2) ----------------------------------------------------

    async def _starttls(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        if not self.tls_available or self.conn.tls is not None:
            raise Refused("TLS is not available" if self.conn.tls is None else "TLS is on")
        await self.emit(response.tagged(cmd.tag, "OK", "begin TLS negotiation now"))
        return Outcome(Next.STARTTLS)

    def tls_started(self, description: str) -> None:
        self.conn.tls = description

    async def _login(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 2:
            raise ParseError("LOGIN takes a user name and a password")
        if not self._plaintext_ok():
            raise Refused("use STARTTLS or port 993 to log in", "PRIVACYREQUIRED")
        user = _credential(cmd.args[0], "user name")
        password = _credential(cmd.args[1], "password")
        return await self._authenticate_as(cmd.tag, user, password, "LOGIN")

    async def _authenticate(self, cmd: Command) -> Outcome:
        if not cmd.args or len(cmd.args) > 2:
            raise ParseError("AUTHENTICATE takes a mechanism and an optional initial response")
        if not self._plaintext_ok():
            raise Refused("use STARTTLS or port 993 to log in", "PRIVACYREQUIRED")
        mechanism = atom(cmd.args[0], "mechanism").upper()
        try:
            exchange = sasl.new_exchange(mechanism)
        except (KeyError, sasl.SASLError):
            raise Refused(f"unsupported mechanism {mechanism[:20]}", "CANNOT") from None
        self._sasl, self._sasl_tag = exchange, cmd.tag
        initial: bytes | None = None
        try:
            if len(cmd.args) == 2:  # RFC 4959 SASL-IR; "=" is an empty response
                initial = sasl.decode_response(astring_bytes(cmd.args[1]))
            return await self._sasl_result(exchange.start(initial))
        except sasl.SASLCancelled:
            return await self._sasl_end("BAD", "AUTHENTICATE cancelled")
        except sasl.SASLError as e:
            return await self._sasl_end("BAD", f"AUTHENTICATE: {e}")

    async def sasl_line(self, line: bytes) -> Outcome:
        """A client response line during AUTHENTICATE (RFC 9051 §6.2.2)."""
        exchange = self._sasl
        assert exchange is not None
        try:
            return await self._sasl_result(exchange.step(sasl.decode_response(line)))
        except sasl.SASLCancelled:
            return await self._sasl_end("BAD", "AUTHENTICATE cancelled")
        except sasl.SASLError as e:
            return await self._sasl_end("BAD", f"AUTHENTICATE: {e}")

    async def _sasl_end(self, status: str, text: str) -> Outcome:
        self._sasl = None
        await self.emit(response.tagged(self._sasl_tag, status, text))
        return Outcome()

    async def _sasl_result(self, result: bytes | sasl.Credentials) -> Outcome:
        if isinstance(result, bytes):
            await self.emit(response.continuation_b64(result))
            return Outcome(Next.SASL)
        self._sasl = None
        if result.authzid and result.authzid != result.authcid:
            await self.emit(
                response.tagged(self._sasl_tag, "NO", "proxy login not allowed", "AUTHZFAILED")
            )
            return Outcome()
        return await self._authenticate_as(
            self._sasl_tag, result.authcid, result.password, "AUTHENTICATE"
        )

    async def _authenticate_as(self, tag: str, user: str, password: str, how: str) -> Outcome:
        ip = self.conn.client_ip
        if self.throttle.locked(ip, user):
            log.warning("auth.locked", user=user, ip=ip)
            await self.emit(
                response.tagged(tag, "NO", "too many failed logins; try later", "UNAVAILABLE")
            )
            return Outcome()
        account = await self.accounts.authenticate(user, password)
        if account is None:
            self.throttle.failure(ip, user)
            log.info("auth.failed", user=user, how=how)
            await self.emit(
                response.tagged(tag, "NO", "invalid credentials", "AUTHENTICATIONFAILED")
            )
            return Outcome(delay=self.throttle.delay(ip, user))
        self.throttle.success(ip, user)
        self.account = account.address
        self.quota = account.quota_bytes
        self.state = State.AUTHENTICATED
        bind(account=account.address)
        log.info("auth.ok", how=how)
        await self.store.ensure_account(account.address)
        # RFC 9051 §6.2.3: send the capabilities again, since they change after login.
        await self.emit(
            response.tagged(tag, "OK", "logged in", "CAPABILITY " + self.capabilities())
        )
        return Outcome()

    # --- authenticated (RFC 9051 §6.3) ---------------------------------------------------------

    def _user(self) -> str:
        assert self.account is not None
        return self.account

    def _mailbox_name(self, value: Value) -> str:
        return mailbox_name(value, utf8=self.utf8)

    def _out_name(self, name: str) -> bytes:
        return response.mailbox_name(name, utf8=self.utf8)

    async def _enable(self, cmd: Command) -> Outcome:
        """RFC 5161. Names we do not know are ignored, as the RFC asks."""
        if not cmd.args:
            raise ParseError("ENABLE needs at least one capability")
        newly: list[str] = []
        for arg in cmd.args:
            name = atom(arg, "capability").upper()
            if name in _ENABLEABLE and name not in self.enabled:
                self.enabled.add(name)
                newly.append({"IMAP4REV2": "IMAP4rev2"}.get(name, name))
        if "QRESYNC" in newly and "CONDSTORE" not in self.enabled:
            self.enabled.add("CONDSTORE")
        await self.emit(response.untagged(("ENABLED " + " ".join(newly)).rstrip()))
        return await self._ok(cmd.tag, "ENABLE completed")

    async def _select(self, cmd: Command) -> Outcome:
        return await self._open(cmd, readonly=cmd.name == "EXAMINE")

    async def _open(self, cmd: Command, *, readonly: bool) -> Outcome:
        if not cmd.args or len(cmd.args) > 2:
            raise ParseError(f"{cmd.name} takes a mailbox name and optional parameters")
        name = self._mailbox_name(cmd.args[0])
        qresync: tuple[int, int, SequenceSet | None] | None = None
        if len(cmd.args) == 2:
            for param, value in _params(paren_list(cmd.args[1], "select parameters")):
                if param == "CONDSTORE" and value is None:
                    self.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8
                elif param == "QRESYNC" and value is not None and self.qresync:
                    qresync = _qresync_param(value)
                else:
                    raise ParseError(f"unknown or unusable SELECT parameter {param[:30]}")
        if self.selected is not None:
            await self._deselect()
            await self.emit(b"* OK [CLOSED] previous mailbox closed\r\n")  # RFC 9051 §7.1
        account = self._user()
        mailbox = await self.store.get_mailbox(account, name)
        self.changes = self.changes or self.store.subscribe(account)
        self._drain_changes()
        status = await self.store.status(account, mailbox.id)
        metas = await self.store.fetch(account, mailbox.id)
        view = SelectedView(
            self.store,
            account,
            mailbox,
            readonly=readonly,
            metas=metas,
            modseq=status.highestmodseq,
            uidnext=status.uidnext,
        )
        self.selected = view
        self.state = State.SELECTED
        self.saved = []
        flags = [*SYSTEM_FLAGS, *sorted(view.keywords)]
        await self.emit(b"* FLAGS " + response.flag_list(flags) + b"\r\n")
        permanent = [] if readonly else [*flags, "\\*"]
        await self.emit(
            b"* OK [PERMANENTFLAGS " + response.flag_list(permanent) + b"] flags allowed\r\n"
        )
        await self.emit(b"* %d EXISTS\r\n" % view.exists)
        if not self.rev2:
            await self.emit(b"* 0 RECENT\r\n")
            first_unseen = next(
                (i for i, m in enumerate(metas, 1) if "\\Seen" not in m.flags), None
            )
            if first_unseen is not None:
                await self.emit(b"* OK [UNSEEN %d] first unseen\r\n" % first_unseen)
        await self.emit(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % mailbox.uidvalidity)
        await self.emit(b"* OK [UIDNEXT %d] predicted next UID\r\n" % status.uidnext)
        await self.emit(b"* OK [HIGHESTMODSEQ %d] highest\r\n" % status.highestmodseq)
        if self.rev2:
            await self.emit(b'* LIST () "/" ' + self._out_name(mailbox.name) + b"\r\n")
        if qresync is not None:
            await self._qresync_select(view, *qresync)
        code = "READ-ONLY" if readonly else "READ-WRITE"
        await self.emit(response.tagged(cmd.tag, "OK", f"{cmd.name} completed", code))
        return Outcome()

    async def _qresync_select(
        self, view: SelectedView, uidvalidity: int, modseq: int, known: SequenceSet | None
    ) -> None:
        """RFC 7162 §3.2.5: what changed since the client's MODSEQ, if its UIDVALIDITY holds."""
        if uidvalidity != view.mailbox.uidvalidity:
            return
        account = self._user()
        gone = await self.store.expunged_since(account, view.id, modseq)
        uids = None
        if known is not None:  # only the messages the client says it knows
            largest = max(view.largest_uid, max(gone, default=0))
            gone = [u for u in gone if known.contains(u, largest)]
            uids = _ranges([u for _, u in view.by_uid(known)])
        if gone:
            await self.emit(b"* VANISHED (EARLIER) " + format_sequence(gone).encode() + b"\r\n")
        if uids == []:
            return
        for meta in await self.store.fetch(account, view.id, uids, changed_since=modseq):
            seq = view.seq_of(meta.uid)
            if seq is not None:
                await self.emit(view.flags_line(seq, meta, uid=True, modseq=True))

    async def _deselect(self) -> None:
        self.selected = None
        self.state = State.AUTHENTICATED

    async def _create(self, cmd: Command) -> Outcome:
        if not cmd.args or len(cmd.args) > 2:
            raise ParseError("CREATE takes a mailbox name")
        name = self._mailbox_name(cmd.args[0])
        special: str | None = None
        if len(cmd.args) == 2:  # RFC 6154 §3 CREATE-SPECIAL-USE
            for param, value in _params(paren_list(cmd.args[1], "create parameters")):
                if param != "USE" or not isinstance(value, tuple) or len(value) != 1:
                    raise ParseError("CREATE parameters: only USE (\\attribute)")
                special = atom(value[0], "special-use")
                if special.lower() not in _SPECIAL_USES:
                    raise Refused(f"unknown special-use {special[:30]}", "USEATTR")
                special = _SPECIAL_USES[special.lower()]
        if name == "INBOX":
            raise Refused("INBOX always exists", "ALREADYEXISTS")
        _creatable(name)
        await self.store.create_mailbox(self._user(), name, special)
        return await self._ok(cmd.tag, "CREATE completed")

    async def _delete(self, cmd: Command) -> Outcome:
        name = self._mailbox_name(_one(cmd))
        if name == "INBOX":
            raise Refused("INBOX cannot be deleted", "CANNOT")
        boxes = await self.store.list_mailboxes(self._user())
        if not any(b.name == name for b in boxes):
            raise NoSuchMailbox(name)
        if self.selected is not None and self.selected.mailbox.name == name:
            await self._deselect()
            await self.emit(b"* OK [CLOSED] mailbox deleted\r\n")
        await self.store.delete_mailbox(self._user(), name)
        return await self._ok(cmd.tag, "DELETE completed")

    async def _rename(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 2:
            raise ParseError("RENAME takes two mailbox names")
        old = self._mailbox_name(cmd.args[0])
        new = self._mailbox_name(cmd.args[1])
        if new == "INBOX":
            raise Refused("cannot rename onto INBOX", "ALREADYEXISTS")
        _creatable(new)
        await self.store.rename_mailbox(self._user(), old, new)
        return await self._ok(cmd.tag, "RENAME completed")

    async def _subscribe(self, cmd: Command) -> Outcome:
        name = self._mailbox_name(_one(cmd))
        subscribe = cmd.name == "SUBSCRIBE"
        if subscribe:
            await self.store.get_mailbox(self._user(), name)  # RFC 9051 §6.3.7 lets us refuse
        await self.store.set_subscribed(self._user(), name, subscribe)
        return await self._ok(cmd.tag, f"{cmd.name} completed")

    async def _compress(self, cmd: Command) -> Outcome:
        mechanism = atom(_one(cmd), "mechanism").upper()
        if mechanism != "DEFLATE":
            raise ParseError(f"unknown compression mechanism {mechanism[:20]}")
        if self.compressed:
            raise Refused("compression is already on", "COMPRESSIONACTIVE")
        self.compressed = True
        await self.emit(response.tagged(cmd.tag, "OK", "DEFLATE active"))
        return Outcome(Next.COMPRESS)

    async def _namespace(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        await self.emit(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return await self._ok(cmd.tag, "NAMESPACE completed")

    async def _list(self, cmd: Command) -> Outcome:
        from posthorn.imap.listing import list_command

        for line in await list_command(self, cmd):
            await self.emit(line)
        return await self._ok(cmd.tag, f"{cmd.name} completed")

    async def _status(self, cmd: Command) -> Outcome:
        if len(cmd.args) != 2:
            raise ParseError("STATUS takes a mailbox name and a list of items")
        name = self._mailbox_name(cmd.args[0])
        items = [atom(v, "status item").upper() for v in paren_list(cmd.args[1], "items")]
        bad = [i for i in items if i not in _STATUS_ITEMS]
        if bad or not items:
            raise ParseError(f"unknown STATUS item {bad[0][:30] if bad else '(none)'}")
        mailbox = await self.store.get_mailbox(self._user(), name)
        await self.emit(await self.status_line(mailbox.id, mailbox.name, items))
        return await self._ok(cmd.tag, "STATUS completed")

    async def status_line(self, mailbox_id: int, name: str, items: Sequence[str]) -> bytes:
        status = await self.store.status(self._user(), mailbox_id)
        values = {
            "MESSAGES": status.messages,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
            "DELETED": status.deleted,
            "SIZE": status.size,
            "RECENT": 0,
            "HIGHESTMODSEQ": status.highestmodseq,
            "APPENDLIMIT": self.limits.append_limit,
        }
        if "HIGHESTMODSEQ" in items:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE-enabling command
        body = " ".join(f"{i} {values[i]}" for i in items)
        return b"* STATUS " + self._out_name(name) + b" (" + body.encode() + b")\r\n"

    async def _append(self, cmd: Command) -> Outcome:
        """RFC 9051 §6.3.12 with RFC 3502 MULTIAPPEND and RFC 4315 APPENDUID."""
        if len(cmd.args) < 2:
            raise ParseError("APPEND takes a mailbox name and a message")
        name = self._mailbox_name(cmd.args[0])
        messages = _append_messages(cmd.args[1:])
        account = self._user()
        try:
            mailbox = await self.store.get_mailbox(account, name)
        except NoSuchMailbox:
            raise Refused("no such mailbox", "TRYCREATE") from None
        uids: list[int] = []
        try:
            for data, flags, when in messages:
                result = await self.store.append(
                    account, mailbox.id, data, flags=flags, internal_date=when, quota=self.quota
                )
                uids.append(result.uid)
        except StoreError:
            if uids:  # RFC 3502 §6.3.11: MULTIAPPEND is all or nothing
                await self.store.expunge(
                    account, mailbox.id, [(u, u) for u in uids], only_deleted=False
                )
            raise
        if self.selected is not None and self.selected.id == mailbox.id:
            self.selected.dirty = True
        code = f"APPENDUID {mailbox.uidvalidity} {format_sequence(uids)}"
        return await self._ok(cmd.tag, "APPEND completed", code)

    async def _getquotaroot(self, cmd: Command) -> Outcome:
        name = self._mailbox_name(_one(cmd))
        await self.store.get_mailbox(self._user(), name)
        await self.emit(b"* QUOTAROOT " + self._out_name(name) + b' ""\r\n')
        await self.emit(await self._quota_line())
        return await self._ok(cmd.tag, "GETQUOTAROOT completed")

    async def _getquota(self, cmd: Command) -> Outcome:
        if astring(_one(cmd)) != "":
            raise Refused("no such quota root", "NONEXISTENT")
        await self.emit(await self._quota_line())
        return await self._ok(cmd.tag, "GETQUOTA completed")

    async def _setquota(self, cmd: Command) -> Outcome:
        raise Refused("quotas are set by the administrator", "NOPERM")

    async def _quota_line(self) -> bytes:
        """RFC 9208 §5.1: STORAGE in units of 1024 octets."""
        if self.quota is None:
            return b'* QUOTA "" ()\r\n'
        usage = await self.store.quota_usage(self._user())
        used = (usage.bytes + 1023) // 1024
        return b'* QUOTA "" (STORAGE %d %d)\r\n' % (used, self.quota // 1024)

    async def _idle(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        self._idle_tag = cmd.tag
        await self._updates()
        await self.emit(b"+ idling\r\n")
        return Outcome(Next.IDLE)

    async def idle_wait(self) -> None:
        """Return when the change feed has something for the selected mailbox (RFC 2177)."""
        view, sub = self.selected, self.changes
        if view is None or sub is None:
            await _forever()
            return
        while True:
            try:
                change = await sub.get()
            except ChangesLost:
                view.dirty = True
                return
            if change.mailbox_id == view.id and change.kind is not ChangeKind.MAILBOXES:
                view.dirty = True
                return

    async def idle_updates(self) -> None:
        self._running = "IDLE"
        try:
            await self._updates()
        finally:
            self._running = ""

    async def idle_done(self, line: bytes) -> Outcome:
        if line.strip().upper() != b"DONE":
            await self.emit(response.tagged(self._idle_tag, "BAD", "expected DONE"))
            return Outcome()
        return await self._ok(self._idle_tag, "IDLE terminated")

    # --- selected (RFC 9051 §6.4) ------------------------------------------------------------

    def _view(self) -> SelectedView:
        assert self.selected is not None
        return self.selected

    def _targets(self, value: Value, *, uid: bool) -> list[tuple[int, int]]:
        view = self._view()
        seqset = sequence_arg(value)
        if seqset.saved:
            saved = set(self.saved)
            return [(s, u) for s, u in enumerate(view.uids, 1) if u in saved]
        if uid:
            return view.by_uid(seqset)
        if view.uids_beyond(seqset) and not (view.exists == 0 and _only_star(seqset)):
            raise ParseError("message number out of range")
        return view.by_seq(seqset)

    async def _check(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        self._view().dirty = True
        return await self._ok(cmd.tag, "CHECK completed")

    async def _close(self, cmd: Command) -> Outcome:
        _no_args(cmd)
        view = self._view()
        code = None
        if cmd.name == "CLOSE" and not view.readonly:  # RFC 9051 §6.4.1: expunge silently
            gone = await self.store.expunge(self._user(), view.id)
            if gone and self.condstore:  # RFC 7162 §3.2.8
                status = await self.store.status(self._user(), view.id)
                code = f"HIGHESTMODSEQ {status.highestmodseq}"
        await self._deselect()
        await self.emit(response.tagged(cmd.tag, "OK", f"{cmd.name} completed", code))
        return Outcome()

    async def _expunge(self, cmd: Command) -> Outcome:
        view = self._view()
        if view.readonly:
            raise Refused("mailbox is read-only", "READ-ONLY")
        uids = None
        if cmd.name == "UID EXPUNGE":  # RFC 4315 §2.1
            uids = [(u, u) for _, u in self._targets(_one(cmd), uid=True)]
            if not uids:
                return await self._ok(cmd.tag, "UID EXPUNGE completed")
        else:
            _no_args(cmd)
        gone = await self.store.expunge(self._user(), view.id, uids)
        view.pending_expunge.update(gone)
        view.dirty = True
        await self._updates()
        code = f"HIGHESTMODSEQ {view.modseq}" if self.condstore else None
        await self.emit(response.tagged(cmd.tag, "OK", f"{cmd.name} completed", code))
        return Outcome()

    async def _fetch(self, cmd: Command) -> Outcome:
        uid = cmd.name == "UID FETCH"
        if len(cmd.args) not in (2, 3):
            raise ParseError("FETCH takes a sequence set, items and optional modifiers")
        view = self._view()
        targets = self._targets(cmd.args[0], uid=uid)
        req = parse_fetch_items(cmd.args[1])
        changed_since: int | None = None
        vanished = False
        if len(cmd.args) == 3:
            for param, value in _params(paren_list(cmd.args[2], "fetch modifiers")):
                if param == "CHANGEDSINCE" and value is not None:
                    changed_since = number(value, "CHANGEDSINCE", bits=63)
                elif param == "VANISHED" and value is None and uid and self.qresync:
                    vanished = True
                else:
                    raise ParseError(f"unknown FETCH modifier {param[:30]}")
            if changed_since is not None:
                self.enabled.add("CONDSTORE")
            elif vanished:
                raise ParseError("VANISHED needs CHANGEDSINCE")
        if req.modseq:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.1
        if vanished and changed_since is not None:
            gone = await self.store.expunged_since(self._user(), view.id, changed_since)
            seqset = sequence_arg(cmd.args[0])
            gone = [u for u in gone if seqset.contains(u, max(view.largest_uid, *gone, 0))]
            if gone:
                await self.emit(b"* VANISHED (EARLIER) " + format_sequence(gone).encode() + b"\r\n")
        account = self._user()
        sets_seen = req.sets_seen and not view.readonly
        unreadable: list[int] = []
        flags_asked = any(item.kind is Kind.FLAGS for item in req.items)
        for start in range(0, len(targets), FETCH_BATCH):
            batch = targets[start : start + FETCH_BATCH]
            metas = await self.store.fetch(
                account,
                view.id,
                _ranges([u for _, u in batch]),
                changed_since=changed_since,
                with_info=req.needs_info,
            )
            by_uid = {m.uid: m for m in metas}
            seen_now: set[int] = set()
            if sets_seen:
                unseen = [u for u in by_uid if "\\Seen" not in by_uid[u].flags]
                if unseen:
                    result = await self.store.store_flags(
                        account, view.id, _ranges(unseen), frozenset({"\\Seen"}), FlagMode.ADD
                    )
                    for upd in result.updated:
                        old = by_uid[upd.uid]
                        by_uid[upd.uid] = _with(old, upd.flags, upd.modseq)
                        view.reported[upd.uid] = upd.modseq
                        seen_now.add(upd.uid)
            for seq, u in batch:
                meta = by_uid.get(u)
                if meta is None:
                    continue
                try:
                    line = await render_fetch(
                        req,
                        seq,
                        meta,
                        _Reader(self.store, account, view.id, u),
                        flags=view.flags_of(meta),
                        uid=uid,
                        modseq=self.condstore and (changed_since is not None or req.modseq),
                        utf8=self.utf8,
                        rev2=self.rev2,
                    )
                except (NoSuchMessage, OSError) as e:
                    # Its metadata is here but its octets are not: expunged this instant, or
                    # a damaged file. Answer the others; say so in the tagged reply.
                    log.error("imap.storage_error", uid=u, error=str(e))
                    unreadable.append(u)
                    continue
                await self.emit(line)
                if u in seen_now and not flags_asked:
                    # RFC 9051 §6.4.5: flags changed by the fetch are reported with it.
                    await self.emit(view.flags_line(seq, meta, uid=uid, modseq=self.condstore))
        if unreadable:
            text = f"could not read message UID {format_sequence(unreadable)}"
            raise Refused(text, "SERVERBUG")
        return await self._ok(cmd.tag, f"{cmd.name} completed")

    async def _store(self, cmd: Command) -> Outcome:
        uid = cmd.name == "UID STORE"
        view = self._view()
        args = list(cmd.args)
        if len(args) < 3:
            raise ParseError("STORE takes a sequence set, an action and flags")
        targets = self._targets(args.pop(0), uid=uid)
        unchanged_since: int | None = None
        if isinstance(modifiers := args[0], tuple):
            args.pop(0)
            for param, value in _params(modifiers):
                if param == "UNCHANGEDSINCE" and value is not None:
                    unchanged_since = number(value, "UNCHANGEDSINCE", bits=63)
                else:
                    raise ParseError(f"unknown STORE modifier {param[:30]}")
            self.enabled.add("CONDSTORE")
        action = atom(args.pop(0), "STORE action").upper()
        mode, silent = _store_action(action)
        flags = _flags(args)
        if view.readonly:
            raise Refused("mailbox is read-only", "READ-ONLY")
        if not targets:
            return await self._ok(cmd.tag, f"{cmd.name} completed")
        result = await self.store.store_flags(
            self._user(),
            view.id,
            _ranges([u for _, u in targets]),
            flags,
            mode,
            unchanged_since=unchanged_since,
        )
        view.keywords.update(f for f in flags if not f.startswith("\\"))
        updated = {upd.uid: upd for upd in result.updated}
        failed = set(result.failed)
        for upd in result.updated:
            view.reported[upd.uid] = upd.modseq
        if not silent or self.condstore:
            metas = {}
            if not silent:
                metas = {m.uid: m for m in await self._metas([u for _, u in targets])}
            for seq, u in targets:
                if u in updated:
                    upd = updated[u]
                    meta = _with(metas.get(u), upd.flags, upd.modseq, uid=u)
                elif not silent and u in metas and u not in failed:
                    meta = metas[u]
                else:
                    continue
                if silent and unchanged_since is None:
                    continue
                await self.emit(
                    view.flags_line(seq, meta, uid=uid, modseq=self.condstore)
                    if not silent
                    else b"* %d FETCH (MODSEQ (%d))\r\n" % (seq, meta.modseq)
                )
        code = None
        if failed:
            numbers = sorted(failed) if uid else [s for s, u in targets if u in failed]
            code = "MODIFIED " + format_sequence(numbers)
        return await self._ok(cmd.tag, f"{cmd.name} completed", code)

    async def _metas(self, uids: list[int]) -> list[MessageMeta]:
        return await self.store.fetch(self._user(), self._view().id, _ranges(uids))

    async def _copy(self, cmd: Command) -> Outcome:
        uid = cmd.name.startswith("UID ")
        move = cmd.name.endswith("MOVE")
        if len(cmd.args) != 2:
            raise ParseError(f"{cmd.name} takes a sequence set and a mailbox name")
        view = self._view()
        targets = self._targets(cmd.args[0], uid=uid)
        name = self._mailbox_name(cmd.args[1])
        account = self._user()
        try:
            dest = await self.store.get_mailbox(account, name)
        except NoSuchMailbox:
            raise Refused("no such mailbox", "TRYCREATE") from None
        if move and view.readonly:
            raise Refused("mailbox is read-only", "READ-ONLY")
        if not targets:
            return await self._ok(cmd.tag, f"{cmd.name} completed")
        ranges = _ranges([u for _, u in targets])
        if move:
            result = await self.store.move(account, view.id, ranges, dest.id)
        else:
            result = await self.store.copy(account, view.id, ranges, dest.id, quota=self.quota)
        code = None
        if result.mapping:
            src = format_sequence([a for a, _ in result.mapping])
            dst = format_sequence([b for _, b in result.mapping])
            code = f"COPYUID {result.dest_uidvalidity} {src} {dst}"
        if dest.id == view.id:
            view.dirty = True
        if move:
            # RFC 6851 §4.3: COPYUID comes untagged, before the expunges.
            if code:
                await self.emit(response.untagged(f"OK [{code}] moved"))
            for line in view.remove(result.expunged, qresync=self.qresync):
                await self.emit(line)
            return await self._ok(cmd.tag, f"{cmd.name} completed")
        return await self._ok(cmd.tag, f"{cmd.name} completed", code)

    async def _search(self, cmd: Command) -> Outcome:
        uid = cmd.name.startswith("UID ")
        kind = cmd.name.removeprefix("UID ")
        view = self._view()
        if kind == "SORT":
            query = parse_sort(cmd.args, utf8=self.utf8)
            search, want = query.search, sort_needs(query)
        elif kind == "THREAD":
            tquery = parse_thread(cmd.args, utf8=self.utf8)
            search, want = tquery.search, thread_needs(tquery)
        else:
            search = parse_search(cmd.args, utf8=self.utf8)
            want = needs(search)
        if want.modseq:
            self.enabled.add("CONDSTORE")
        metas = await self.store.fetch(self._user(), view.id, with_info=want.info)
        candidates = []
        for m in metas:
            seq = view.seq_of(m.uid)
            if seq is not None:
                candidates.append(Candidate(seq, m, m.uid in view.recent))
        ctx = _SearchContext(self, view)
        if kind == "SORT":
            matches = await run_sort(query, candidates, ctx)
            self._save(matches, search)
            await self.emit(format_sort(matches, tag=cmd.tag, uid=uid, query=query))
        elif kind == "THREAD":
            nodes = await run_thread(tquery, candidates, ctx)
            await self.emit(format_thread(nodes, uid=uid))
        else:
            matches = await run_search(search, candidates, ctx)
            self._save(matches, search)
            await self.emit(
                format_search(
                    matches,
                    tag=cmd.tag,
                    uid=uid,
                    query=search,
                    esearch=self.rev2,
                    highest_modseq_of_matches=want.modseq,
                )
            )
        return await self._ok(cmd.tag, f"{cmd.name} completed")

    def _save(self, matches: Sequence[Candidate], search: SearchQuery) -> None:
        saved = save_result(matches, search)
        if saved is not None:
            self.saved = saved

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self.changes is not None:
            self.changes.close()
            self.changes = None
        self.selected = None


class MailboxGone(Exception):
    """The selected mailbox was deleted by another session: the only way out is BYE."""


class _Reader:
    """The `ByteReader` FETCH uses for one message."""

    __slots__ = ("account", "mailbox_id", "store", "uid")

    def __init__(self, store: MailStore, account: str, mailbox_id: int, uid: int) -> None:
        self.store, self.account, self.mailbox_id, self.uid = store, account, mailbox_id, uid

    async def __call__(self, start: int, length: int | None) -> bytes:
        return await self.store.read(self.account, self.mailbox_id, self.uid, start, length)


@dataclass
class _SearchContext:
    session: Session
    view: SelectedView
    saved: Sequence[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.saved = self.session.saved

    @property
    def largest_seq(self) -> int:
        return self.view.exists

    @property
    def largest_uid(self) -> int:
        return self.view.largest_uid

    async def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        store = self.session.store
        return await store.read_headers(self.view.account, self.view.id, list(uids))

    async def message(self, uid: int) -> bytes:
        return await self.session.store.read(self.view.account, self.view.id, uid)


async def _forever() -> None:
    import asyncio

    await asyncio.Event().wait()


# --- argument helpers (pure) -------------------------------------------------------------------

_SPECIAL_USES = {
    u.lower(): u for u in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent")
} | {"\\trash": "\\Trash"}


def _creatable(name: str) -> None:
    """RFC 9051 §6.3.4: names with the LIST wildcards could never be listed unambiguously."""
    if "*" in name or "%" in name:
        raise Refused("mailbox names cannot contain * or %", "CANNOT")


def _credential(value: Value, what: str) -> str:
    text = astring(value, what)
    if "\x00" in text or len(text.encode()) > sasl.MAX_PASSWORD_OCTETS:
        raise ParseError(f"{what} is not acceptable")
    return text


def _no_args(cmd: Command) -> None:
    if cmd.args:
        raise ParseError(f"{cmd.name} takes no arguments")


def _one(cmd: Command) -> Value:
    if len(cmd.args) != 1:
        raise ParseError(f"{cmd.name} takes one argument")
    return cmd.args[0]


def _only_star(seqset: SequenceSet) -> bool:
    return all(a is None and b is None for a, b in seqset.elements)


def _params(values: tuple[Value, ...]) -> list[tuple[str, Value | None]]:
    """``(NAME [value] NAME [value])`` where a value is a number atom or a list."""
    out: list[tuple[str, Value | None]] = []
    i = 0
    while i < len(values):
        name = atom(values[i], "parameter").upper()
        value: Value | None = None
        if i + 1 < len(values):
            nxt = values[i + 1]
            if isinstance(nxt, tuple) or (isinstance(nxt, Atom) and nxt.text[:1].isdigit()):
                value = nxt
                i += 1
        out.append((name, value))
        i += 1
    return out


def _qresync_param(value: Value) -> tuple[int, int, SequenceSet | None]:
    """RFC 7162 §3.2.5: (uidvalidity modseq [known-uids [seq-match-data]])."""
    items = paren_list(value, "QRESYNC")
    if len(items) < 2 or len(items) > 4:
        raise ParseError("QRESYNC takes (uidvalidity modseq [known-uids [match-data]])")
    uidvalidity = number(items[0], "UIDVALIDITY", nz=True)
    modseq = number(items[1], "MODSEQ", nz=True, bits=63)
    known = sequence_arg(items[2]) if len(items) >= 3 and isinstance(items[2], Atom) else None
    return uidvalidity, modseq, known


def _store_action(action: str) -> tuple[FlagMode, bool]:
    silent = action.endswith(".SILENT")
    base = action.removesuffix(".SILENT")
    modes = {"FLAGS": FlagMode.REPLACE, "+FLAGS": FlagMode.ADD, "-FLAGS": FlagMode.REMOVE}
    if base not in modes:
        raise ParseError(f"unknown STORE action {action[:30]}")
    return modes[base], silent


_FLAG = re.compile(r"^\\?[!#$&'+\-.0-9<>=?@A-Z^_`a-z|~\x80-\U0010ffff]+$")


def _flags(args: Sequence[Value]) -> frozenset[str]:
    """``(\\Seen $Junk)`` or bare flags; ``\\Recent`` cannot be stored (RFC 9051 §2.3.2)."""
    values: Sequence[Value] = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
    flags: set[str] = set()
    for v in values:
        text = atom(v, "flag")
        if not _FLAG.match(text) or len(text) > 100:
            raise ParseError(f"invalid flag {text[:30]}")
        if text.startswith("\\"):
            canon = canonical_flag(text)
            if canon not in SYSTEM_FLAGS:
                if canon.lower() == "\\recent":
                    continue
                raise ParseError(f"unknown system flag {text[:30]}")
            text = canon
        flags.add(text)
    return frozenset(flags)


def parse_date_time(text: str) -> datetime:
    """RFC 9051 ``date-time``: ``"17-Jul-1996 02:44:25 -0700"``."""
    m = _DATE_TIME.match(text)
    if not m:
        raise ParseError('bad date-time (want "dd-Mon-yyyy hh:mm:ss +zzzz")')
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    months = [x.lower() for x in _MONTHS]
    if mon.lower() not in months:
        raise ParseError("bad month in date-time")
    offset = timedelta(hours=int(zh), minutes=int(zm))
    tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year), months.index(mon.lower()) + 1, int(day), int(hh), int(mm), int(ss), tzinfo=tz
        )
    except ValueError:
        raise ParseError("date-time out of range") from None


def _append_messages(
    args: Sequence[Value],
) -> list[tuple[bytes, frozenset[str], datetime | None]]:
    """``[flags] [date-time] literal`` repeated (RFC 3502), literal possibly ``UTF8 (~{n})``."""
    out: list[tuple[bytes, frozenset[str], datetime | None]] = []
    i = 0
    while i < len(args):
        flags: frozenset[str] = frozenset()
        when: datetime | None = None
        if isinstance(args[i], tuple):
            flags = _flags([args[i]])
            i += 1
        if i < len(args) and isinstance(args[i], String) and not args[i].literal:  # type: ignore[union-attr]
            when = parse_date_time(astring(args[i]))
            i += 1
        if i >= len(args):
            raise ParseError("APPEND: message literal missing")
        arg = args[i]
        if isinstance(arg, Atom) and arg.upper() == "UTF8" and i + 1 < len(args):
            inner = args[i + 1]  # RFC 6855 §4
            if not (isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], String)):
                raise ParseError("APPEND UTF8 takes (~{n} literal8)")
            arg = inner[0]
            i += 1
        if not isinstance(arg, String) or not arg.literal:
            raise ParseError("APPEND: the message must be a literal")
        if not arg.data:
            raise ParseError("APPEND: empty message")
        out.append((arg.data, flags, when))
        i += 1
    return out


def _ranges(uids: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending UIDs as inclusive runs, the store's UIDRanges."""
    out: list[tuple[int, int]] = []
    for u in sorted(uids):
        if out and u == out[-1][1] + 1:
            out[-1] = (out[-1][0], u)
        elif not out or u > out[-1][1]:
            out.append((u, u))
    return out


def _with(
    meta: MessageMeta | None, flags: frozenset[str], modseq: int, *, uid: int = 0
) -> MessageMeta:
    from dataclasses import replace

    if meta is None:
        return MessageMeta(
            uid=uid,
            modseq=modseq,
            flags=flags,
            internal_date=datetime.fromtimestamp(0, UTC),
            size=0,
        )
    return replace(meta, flags=flags, modseq=modseq)


Handler = Callable[[Session, Command], Awaitable[Outcome]]

_COMMANDS: dict[str, tuple[Handler, frozenset[State]]] = {
    "CAPABILITY": (Session._capability, _ANY),
    "NOOP": (Session._noop, _ANY),
    "LOGOUT": (Session._logout, _ANY),
    "ID": (Session._id, _ANY),
    "STARTTLS": (Session._starttls, frozenset({_N})),
    "LOGIN": (Session._login, frozenset({_N})),
    "AUTHENTICATE": (Session._authenticate, frozenset({_N})),
    "ENABLE": (Session._enable, frozenset({_A})),  # RFC 5161 §3.1
    "SELECT": (Session._select, _AUTHED),
    "EXAMINE": (Session._select, _AUTHED),
    "CREATE": (Session._create, _AUTHED),
    "DELETE": (Session._delete, _AUTHED),
    "RENAME": (Session._rename, _AUTHED),
    "SUBSCRIBE": (Session._subscribe, _AUTHED),
    "UNSUBSCRIBE": (Session._subscribe, _AUTHED),
    "LIST": (Session._list, _AUTHED),
    "LSUB": (Session._list, _AUTHED),
    "NAMESPACE": (Session._namespace, _AUTHED),
    "COMPRESS": (Session._compress, _AUTHED),
    "STATUS": (Session._status, _AUTHED),
    "APPEND": (Session._append, _AUTHED),
    "IDLE": (Session._idle, _AUTHED),
    "GETQUOTA": (Session._getquota, _AUTHED),
    "GETQUOTAROOT": (Session._getquotaroot, _AUTHED),
    "SETQUOTA": (Session._setquota, _AUTHED),
    "CHECK": (Session._check, _SELECTED),
    "CLOSE": (Session._close, _SELECTED),
    "UNSELECT": (Session._close, _SELECTED),
    "EXPUNGE": (Session._expunge, _SELECTED),
    "UID EXPUNGE": (Session._expunge, _SELECTED),
    "FETCH": (Session._fetch, _SELECTED),
    "UID FETCH": (Session._fetch, _SELECTED),
    "STORE": (Session._store, _SELECTED),
    "UID STORE": (Session._store, _SELECTED),
    "COPY": (Session._copy, _SELECTED),
    "UID COPY": (Session._copy, _SELECTED),
    "MOVE": (Session._copy, _SELECTED),
    "UID MOVE": (Session._copy, _SELECTED),
    "SEARCH": (Session._search, _SELECTED),
    "UID SEARCH": (Session._search, _SELECTED),
    "SORT": (Session._search, _SELECTED),
    "UID SORT": (Session._search, _SELECTED),
    "THREAD": (Session._search, _SELECTED),
    "UID THREAD": (Session._search, _SELECTED),
}
