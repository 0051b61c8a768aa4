"""The SMTP/LMTP session state machine: parsed commands in, replies and spool entries out.

No sockets here: `posthorn.smtp.server` reads lines and chunks and writes the replies this
returns. What the session may do is fixed by its `Profile` (port 25, 587, 465 or LMTP); what it
knows about the world comes in through two narrow protocols, `Accounts` (the directory) and
`Spool` (the queue), so a scripted dialogue can drive it in a test.

Invariants:
- A 250 for a message is returned only after `SpoolWriter.commit` returned (durable).
- Errors are raised as `SMTPError` where found and become a reply here; any other exception in a
  transaction becomes ``451 4.3.0`` (the shell logs the traceback), never text on the wire.
- After STARTTLS the state is reset to before EHLO (RFC 3207 §4.2).
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass, field
from typing import Protocol

from posthorn import sasl
from posthorn.directory.resolve import Resolution, ResolveStatus
from posthorn.log import get_logger
from posthorn.mail.address import Address, AddressError, parse_address
from posthorn.mail.headers import header_fields, parse_address_list
from posthorn.policy.limits import AuthThrottle
from posthorn.policy.relay import Verdict, relay_verdict
from posthorn.queue.envelope import Envelope, EnvelopeRecipient
from posthorn.smtp import codes
from posthorn.smtp.codes import Reply, SMTPError
from posthorn.smtp.data import ChunkReader, DataReader
from posthorn.smtp.protocol import (
    MailFrom,
    ehlo_lines,
    helo_reply,
    parse_auth,
    parse_bdat,
    parse_command,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
)
from posthorn.smtp.trace import received_field, submission_fields

log = get_logger("posthorn.smtp")

MAX_HEADER_BUFFER = 256 * 1024


@dataclass(frozen=True, slots=True)
class Profile:
    """What one listener allows: the differences between ports 25, 587, 465 and LMTP."""

    name: str
    lmtp: bool = False
    implicit_tls: bool = False
    starttls: bool = False
    auth: bool = False
    auth_required: bool = False
    submission: bool = False


PROFILES = {
    "smtp": Profile("smtp", starttls=True),
    "submission": Profile(
        "submission", starttls=True, auth=True, auth_required=True, submission=True
    ),
    "submissions": Profile(
        "submissions", implicit_tls=True, auth=True, auth_required=True, submission=True
    ),
    "lmtp": Profile("lmtp", lmtp=True),
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_size: int
    max_recipients: int
    max_bad_commands: int
    plaintext_auth_on_loopback: bool


class Account(Protocol):
    @property
    def address(self) -> str: ...


class Accounts(Protocol):
    async def authenticate(self, address: str, password: str) -> Account | None: ...

    async def resolve(self, address: str | Address) -> Resolution: ...


_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
"""`SpoolWriter.commit` errors answered ``452 4.3.1`` rather than ``451 4.3.0``."""


class SpoolWriter(Protocol):
    queue_id: str

    async def write(self, data: bytes) -> None: ...

    async def commit(self, envelope: Envelope) -> str: ...

    async def abort(self) -> None: ...


class Spool(Protocol):
    async def new_message(self) -> SpoolWriter: ...


class Next(enum.Enum):
    """What the shell does after sending an outcome's replies."""

    CONTINUE = "continue"
    CLOSE = "close"
    STARTTLS = "starttls"
    DATA = "data"
    BDAT = "bdat"


@dataclass
class Outcome:
    replies: list[Reply]
    next: Next = Next.CONTINUE
    size: int = 0  # BDAT: the chunk size to read
    discard: bool = False  # BDAT: read the chunk and drop it (refused transaction)
    delay: float = 0.0  # seconds to wait before replying (failed AUTH)


@dataclass
class _Transaction:
    """One mail transaction (RFC 5321 §3.3): MAIL, RCPTs, then DATA or BDATs."""

    mail: MailFrom
    recipients: list[EnvelopeRecipient] = field(default_factory=list)
    writer: SpoolWriter | None = None
    reader: DataReader | ChunkReader | None = None
    header: bytearray | None = None  # submission: the header block, held until complete
    error: Reply | None = None


@dataclass
class Connection:
    """Facts about the connection the session cannot learn from commands."""

    client_ip: str
    loopback: bool
    tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" once encrypted


class Session:
    def __init__(
        self,
        profile: Profile,
        conn: Connection,
        *,
        hostname: str,
        accounts: Accounts,
        spool: Spool,
        limits: Limits,
        throttle: AuthThrottle,
        tls_available: bool,
        postmaster_domain: str | None = None,
    ) -> None:
        self.profile = profile
        self.conn = conn
        self.hostname = hostname
        self.accounts = accounts
        self.spool = spool
        self.limits = limits
        self.throttle = throttle
        self.tls_available = tls_available
        self.postmaster_domain = postmaster_domain
        self.helo: str | None = None
        self.esmtp = False
        self.account: str | None = None
        self.tx: _Transaction | None = None
        self.bad_commands = 0
        self._sasl: sasl.Exchange | None = None
        self._sasl_mechanism = ""

    # --- the greeting and the command loop ----------------------------------------------------

    def greeting(self) -> Reply:
        proto = "LMTP" if self.profile.lmtp else "ESMTP"
        return Reply(220, None, f"{self.hostname} {proto} posthorn")

    async def command(self, line: bytes) -> Outcome:
        if self._sasl is not None:
            return await self._auth_step(line)
        try:
            cmd = parse_command(line)
            handler = self._handlers().get(cmd.verb)
            if handler is None:
                raise SMTPError(codes.COMMAND_UNRECOGNIZED)
            return await handler(cmd.arg)
        except SMTPError as e:
            if e.reply.code in (500, 502, 503):
                self.bad_commands += 1
                if self.bad_commands >= self.limits.max_bad_commands:
                    return Outcome([codes.TOO_MANY_BAD], Next.CLOSE)
            return Outcome([e.reply])

    def _handlers(self) -> dict[str, _Handler]:
        # RFC 5321 §4.1.1 commands, RFC 2033 LHLO, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 3030 BDAT.
        hello: dict[str, _Handler] = (
            {"LHLO": self._lhlo} if self.profile.lmtp else {"EHLO": self._ehlo, "HELO": self._helo}
        )
        return {
            **hello,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "BDAT": self._bdat,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
            "VRFY": self._vrfy,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
        }

    # --- greeting commands ----------------------------------------------------------------

    def extensions(self) -> list[str]:
        ext = [
            "PIPELINING",
            f"SIZE {self.limits.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "BINARYMIME",
            "DSN",
        ]
        if self.profile.starttls and self.tls_available and self.conn.tls is None:
            ext.append("STARTTLS")
        if self._auth_allowed():
            ext.append("AUTH " + " ".join(sasl.MECHANISMS))
        return ext

    def _auth_allowed(self) -> bool:
        """RFC 4954 §4: AUTH only over TLS, or in the clear on loopback when configured."""
        if not self.profile.auth:
            return False
        return self.conn.tls is not None or (
            self.conn.loopback and self.limits.plaintext_auth_on_loopback
        )

    async def _ehlo(self, arg: bytes) -> Outcome:
        await self._hello(parse_helo(arg), esmtp=True)
        return Outcome([ehlo_lines(self.hostname, self.helo or "", self.extensions())])

    async def _lhlo(self, arg: bytes) -> Outcome:
        return await self._ehlo(arg)

    async def _helo(self, arg: bytes) -> Outcome:
        await self._hello(parse_helo(arg), esmtp=False)
        return Outcome([helo_reply(self.hostname, self.helo or "")])

    async def _hello(self, name: str, *, esmtp: bool) -> None:
        # RFC 5321 §4.1.4: EHLO also resets any transaction in progress.
        await self.abort()
        self.helo = name
        self.esmtp = esmtp

    async def _starttls(self, arg: bytes) -> Outcome:
        if arg.strip():
            raise SMTPError(codes.SYNTAX_ERROR_PARAMS)
        if not (self.profile.starttls and self.tls_available) or self.conn.tls is not None:
            raise SMTPError(codes.NOT_IMPLEMENTED if self.conn.tls else codes.TLS_NOT_AVAILABLE)
        return Outcome([codes.START_TLS], Next.STARTTLS)

    async def tls_started(self, description: str) -> None:
        """RFC 3207 §4.2: discard all knowledge obtained from the client before TLS."""
        await self.abort()
        self.conn.tls = description
        self.helo = None
        self.esmtp = False
        self.account = None

    # --- AUTH (RFC 4954) --------------------------------------------------------------------

    async def _auth(self, arg: bytes) -> Outcome:
        if not self.profile.auth:
            raise SMTPError(codes.NOT_IMPLEMENTED)
        if self.helo is None or not self.esmtp:
            raise SMTPError(codes.BAD_SEQUENCE)
        if not self._auth_allowed():
            raise SMTPError(codes.ENCRYPTION_REQUIRED)
        if self.account is not None or self.tx is not None:
            raise SMTPError(codes.BAD_SEQUENCE)  # RFC 4954 §4: once per session, not in a tx
        mechanism, initial = parse_auth(arg)
        try:
            exchange = sasl.new_exchange(mechanism)
        except (KeyError, sasl.SASLError):
            raise SMTPError(codes.AUTH_MECHANISM_UNKNOWN) from None
        self._sasl, self._sasl_mechanism = exchange, mechanism
        try:
            decoded = None if initial is None else sasl.decode_response(initial)
            return await self._auth_result(exchange.start(decoded))
        except sasl.SASLCancelled:
            self._sasl = None
            return Outcome([codes.AUTH_CANCELLED])
        except sasl.SASLError:
            self._sasl = None
            return Outcome([codes.AUTH_SYNTAX])

    async def _auth_step(self, line: bytes) -> Outcome:
        exchange = self._sasl
        assert exchange is not None
        try:
            return await self._auth_result(exchange.step(sasl.decode_response(line)))
        except sasl.SASLCancelled:
            self._sasl = None
            return Outcome([codes.AUTH_CANCELLED])
        except sasl.SASLError:
            self._sasl = None
            return Outcome([codes.AUTH_SYNTAX])

    async def _auth_result(self, result: bytes | sasl.Credentials) -> Outcome:
        if isinstance(result, bytes):
            return Outcome([codes.auth_challenge(result)])
        self._sasl = None
        ip, user = self.conn.client_ip, result.authcid
        if self.throttle.locked(ip, user):
            log.warning("auth.locked", user=user, ip=ip)
            return Outcome([codes.TEMP_AUTH_FAIL])
        account = None
        if not result.authzid or result.authzid == result.authcid:
            account = await self.accounts.authenticate(user, result.password)
        if account is None:
            self.throttle.failure(ip, user)
            log.info("auth.failed", user=user, mechanism=self._sasl_mechanism)
            return Outcome([codes.AUTH_FAILED], delay=self.throttle.delay(ip, user))
        self.throttle.success(ip, user)
        self.account = account.address
        log.info("auth.ok", account=account.address, mechanism=self._sasl_mechanism)
        return Outcome([codes.AUTH_OK])

    # --- the transaction --------------------------------------------------------------------

    async def _mail(self, arg: bytes) -> Outcome:
        if self.helo is None:
            raise SMTPError(codes.BAD_SEQUENCE.with_text("Send EHLO first"))
        if self.tx is not None:
            raise SMTPError(codes.BAD_SEQUENCE.with_text("Nested MAIL command"))
        if self.profile.auth_required and self.account is None:
            raise SMTPError(codes.AUTH_REQUIRED)
        mail = parse_mail_from(arg)
        if mail.params.size is not None and mail.params.size > self.limits.max_message_size:
            raise SMTPError(codes.MESSAGE_TOO_BIG)  # RFC 1870 §6.2
        if self.profile.submission and not await self._may_send_as(mail.path):
            raise SMTPError(codes.SENDER_NOT_OWNED)
        self.tx = _Transaction(mail)
        return Outcome([codes.SENDER_OK])

    async def _may_send_as(self, path: Address | None) -> bool:
        """RFC 6409 §4.3/§6.1: the sender is the account's address or an address (alias or
        plus-address) that delivers to it."""
        if path is None or self.account is None:
            return False
        if path.canonical == self.account:
            return True
        resolution = await self.accounts.resolve(path)
        return resolution.deliverable and any(t.account == self.account for t in resolution.local)

    async def _rcpt(self, arg: bytes) -> Outcome:
        tx = self.tx
        if tx is None:
            raise SMTPError(codes.BAD_SEQUENCE.with_text("Send MAIL first"))
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be accepted.
        rcpt = parse_rcpt_to(
            arg, smtputf8=tx.mail.params.smtputf8, postmaster_domain=self.postmaster_domain
        )
        if len(tx.recipients) >= self.limits.max_recipients:
            raise SMTPError(codes.TOO_MANY_RECIPIENTS)
        resolution = await self.accounts.resolve(rcpt.path)
        verdict = relay_verdict(
            rcpt.path,
            local_domain=resolution.is_local_domain,
            authenticated=self.account is not None and not self.profile.lmtp,
        )
        if verdict.verdict is Verdict.DENIED:
            log.info("rcpt.relay_denied", rcpt=rcpt.path, reason=verdict.reason)
            raise SMTPError(codes.RELAY_DENIED)
        if verdict.verdict is Verdict.LOCAL:
            self._check_local(resolution)
        tx.recipients.append(EnvelopeRecipient(str(rcpt.path), rcpt.notify, rcpt.orcpt))
        return Outcome([codes.RCPT_OK])

    @staticmethod
    def _check_local(resolution: Resolution) -> None:
        if resolution.status in (ResolveStatus.LOOP, ResolveStatus.TOO_DEEP):
            log.warning("rcpt.alias_loop", detail=resolution.detail)
            raise SMTPError(codes.ROUTING_LOOP)
        if not resolution.deliverable:
            raise SMTPError(codes.NO_SUCH_USER)

    async def _data(self, arg: bytes) -> Outcome:
        if arg.strip():
            raise SMTPError(codes.SYNTAX_ERROR_PARAMS)
        tx = self._ready_for_content()
        if isinstance(tx.reader, ChunkReader):
            raise SMTPError(codes.BAD_SEQUENCE.with_text("DATA after BDAT"))
        if tx.mail.params.body == "BINARYMIME":
            raise SMTPError(codes.BAD_SEQUENCE.with_text("BINARYMIME needs BDAT"))  # RFC 3030 §3
        await self._open_writer(tx)
        tx.reader = DataReader(self.limits.max_message_size)
        return Outcome([codes.START_DATA], Next.DATA)

    async def _bdat(self, arg: bytes) -> Outcome:
        size, last = parse_bdat(arg)
        tx = self.tx
        if tx is None or not tx.recipients:
            # RFC 3030 §2: the chunk must still be read and discarded.
            refusal = codes.BAD_SEQUENCE if tx is None else codes.NO_VALID_RECIPIENTS
            return Outcome([refusal], Next.BDAT, size, discard=True)
        if tx.writer is None:
            await self._open_writer(tx)
            binary = tx.mail.params.body == "BINARYMIME"
            tx.reader = ChunkReader(self.limits.max_message_size, binary=binary)
        self._bdat_last = last
        return Outcome([], Next.BDAT, size)

    _bdat_last = False

    def _ready_for_content(self) -> _Transaction:
        tx = self.tx
        if tx is None:
            raise SMTPError(codes.BAD_SEQUENCE.with_text("Send MAIL first"))
        if not tx.recipients:
            raise SMTPError(codes.NO_VALID_RECIPIENTS)
        return tx

    async def _open_writer(self, tx: _Transaction) -> None:
        tx.writer = await self.spool.new_message()
        if self.profile.submission:
            tx.header = bytearray()
        log.info("message.receiving", queue=tx.writer.queue_id, sender=tx.mail.path or "<>")

    async def content(self, chunk: bytes) -> None:
        """Raw bytes of the DATA stream or a BDAT chunk, as read from the client."""
        tx = self.tx
        assert tx is not None and tx.reader is not None and tx.writer is not None
        data = tx.reader.feed(chunk)
        if tx.error is None and tx.reader.error is None and data:
            await self._write(tx, data)

    async def _write(self, tx: _Transaction, data: bytes) -> None:
        assert tx.writer is not None
        if tx.header is None:
            await tx.writer.write(data)
            return
        # Submission: hold the header block until it is complete, to check From and to add
        # Message-ID/Date before anything reaches the spool.
        tx.header += data
        end = tx.header.find(b"\r\n\r\n")
        if end < 0 and len(tx.header) < MAX_HEADER_BUFFER:
            return
        await self._flush_header(tx, len(tx.header) if end < 0 else end + 2)

    async def _flush_header(self, tx: _Transaction, header_end: int) -> None:
        assert tx.writer is not None and tx.header is not None
        held, tx.header = bytes(tx.header), None
        block = held[:header_end]
        if not await self._from_allowed(block):
            tx.error = codes.SENDER_NOT_OWNED.with_text("From: header does not belong to you")
            return
        await tx.writer.write(submission_fields(block, self.hostname) + held)

    async def _from_allowed(self, block: bytes) -> bool:
        """RFC 6409 §8.1 lets the MSA check From: every author must be the account's own."""
        authors = [a for a in parse_address_list(header_fields(block).get("from")) if a.host]
        if not authors:
            return False
        for author in authors:
            try:
                address = parse_address(f"{author.mailbox}@{author.host}")
            except AddressError:
                return False
            if not await self._may_send_as(address):
                return False
        return True

    @property
    def in_sasl(self) -> bool:
        """An AUTH exchange is waiting for the client's next line."""
        return self._sasl is not None

    def content_failed(self) -> None:
        """Writing the spool failed (disk full, I/O error): refuse the message at its end."""
        if self.tx is not None and self.tx.error is None:
            self.tx.error = codes.INSUFFICIENT_STORAGE

    @property
    def content_done(self) -> bool:
        tx = self.tx
        return tx is not None and isinstance(tx.reader, DataReader) and tx.reader.done

    def content_rest(self) -> bytes:
        """Bytes after the end-of-data marker: pipelined commands (RFC 2920)."""
        tx = self.tx
        assert tx is not None and isinstance(tx.reader, DataReader)
        return tx.reader.rest

    async def end_of_content(self) -> Outcome:
        """After DATA's end marker, or after each BDAT chunk."""
        tx = self.tx
        if tx is None:  # a BDAT chunk after a refused transaction: read and dropped
            return Outcome([])
        if isinstance(tx.reader, ChunkReader) and not self._bdat_last:
            # Errors (size, bare line ends) are reported once, after BDAT LAST.
            return Outcome([Reply(250, "2.0.0", f"{tx.reader.size} octets received")])
        if isinstance(tx.reader, ChunkReader):
            # RFC 5322 §2.3 wants a final CRLF; the reader supplies it when BDAT left it off.
            tail = tx.reader.finish()
            if tail and tx.error is None and tx.reader.error is None:
                await self._write(tx, tail)
        return await self._finish(tx)

    async def _finish(self, tx: _Transaction) -> Outcome:
        self.tx = None
        assert tx.writer is not None and tx.reader is not None
        error = tx.reader.error or tx.error
        if error is None and tx.header is not None:
            await self._flush_header(tx, len(tx.header))
            error = tx.error
        if error is not None:
            await tx.writer.abort()
            log.info("message.rejected", queue=tx.writer.queue_id, reply=error.code)
            return Outcome(self._per_recipient(tx, error))
        envelope = self._envelope(tx)
        try:
            queue_id = await tx.writer.commit(envelope)
        except OSError as e:
            await tx.writer.abort()
            if e.errno not in _OUT_OF_SPACE:
                raise
            # RFC 5321 §4.5.3.1.10 / RFC 3463 X.3.1: a temporary refusal; the client keeps
            # the message and retries once space returns (the spool logged the traceback).
            log.warning("message.rejected", queue=tx.writer.queue_id, reply="452 disk full")
            return Outcome(self._per_recipient(tx, codes.INSUFFICIENT_STORAGE))
        except Exception:
            await tx.writer.abort()
            raise
        log.info(
            "message.queued", queue=queue_id, size=tx.reader.size, recipients=len(tx.recipients)
        )
        return Outcome(self._per_recipient(tx, codes.queued(queue_id)))

    def _per_recipient(self, tx: _Transaction, reply: Reply) -> list[Reply]:
        # RFC 2033 §4.2: LMTP answers DATA once per accepted recipient.
        return [reply] * len(tx.recipients) if self.profile.lmtp else [reply]

    def _envelope(self, tx: _Transaction) -> Envelope:
        assert tx.writer is not None
        params = tx.mail.params
        protocol = self._protocol_keyword()
        return Envelope(
            mail_from="" if tx.mail.path is None else str(tx.mail.path),
            recipients=tuple(tx.recipients),
            received=received_field(
                helo=self.helo or "",
                client_ip=self.conn.client_ip,
                hostname=self.hostname,
                protocol=protocol,
                queue_id=tx.writer.queue_id,
                tls=self.conn.tls,
            ),
            ret=params.ret,
            envid=params.envid,
            body=params.body or "7BIT",
            smtputf8=params.smtputf8,
            auth=self.account,
            client_ip=self.conn.client_ip,
            helo=self.helo or "",
            protocol=protocol,
        )

    def _protocol_keyword(self) -> str:
        """RFC 3848 / RFC 6531 §3.7.3 WITH keywords."""
        if self.profile.lmtp:
            return "LMTP"
        if not self.esmtp:
            return "SMTP"
        word = "UTF8SMTP" if self.tx is not None and self.tx.mail.params.smtputf8 else "ESMTP"
        return word + ("S" if self.conn.tls else "") + ("A" if self.account else "")

    # --- the rest -----------------------------------------------------------------------------

    async def _rset(self, arg: bytes) -> Outcome:
        await self.abort()
        return Outcome([codes.OK])

    async def _noop(self, arg: bytes) -> Outcome:
        return Outcome([codes.OK])

    async def _quit(self, arg: bytes) -> Outcome:
        await self.abort()
        return Outcome([codes.CLOSING], Next.CLOSE)

    async def _vrfy(self, arg: bytes) -> Outcome:
        # RFC 5321 §3.5.3: 252 neither confirms nor denies (no address harvesting).
        return Outcome([codes.CANNOT_VRFY])

    async def abort(self) -> None:
        """Drop the transaction in progress (RSET, QUIT, disconnect, timeout)."""
        tx, self.tx = self.tx, None
        if tx is not None and tx.writer is not None:
            await tx.writer.abort()


class _Handler(Protocol):
    async def __call__(self, arg: bytes) -> Outcome: ...
