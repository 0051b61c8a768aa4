"""Message content readers, pure and bulk: the DATA stream (RFC 5321 §4.1.1.4) and BDAT chunks
(RFC 3030). Raw socket bytes in, message bytes for the spool out.

Owns: the end-of-data marker, dot transparency, the size limit, the line-length limit and the
bare CR / bare LF rule, and nothing else (no headers, no I/O).

How (DESIGN.md "Bulk I/O, not per-line Python"): each chunk is scanned with ``bytes.find``,
``bytes.replace``, ``bytes.count`` and a ``rfind`` that jumps a whole line-length limit at a
time, so Python runs a handful of steps per chunk (plus one per ~1000 octets for line lengths),
never one per line.

Invariants:

- Memory is one chunk plus `buffered` ≤ 4 octets carried over (a possible start of the end
  marker); no message is ever held whole.
- The output is the same however the input is split into chunks (a hypothesis test feeds every
  split): problems found never depend on chunk boundaries.
- Once `error` is set, `feed` returns ``b""``: a refused message is not written any further, and
  the bytes returned in all never exceed ``max_size``. Scanning goes on to the end marker, so
  the session stays in step with the client and answers once, after the data (RFC 5321 §4.2.5).
- When several problems occur, `error` is the gravest, whatever the order they arrive in:
  bare line ending, then line too long, then message too big.

SMTP smuggling defence: the DATA stream ends *only* at ``CRLF "." CRLF`` (RFC 5321 §4.1.1.4).
``LF "." LF``, ``LF "." CRLF``, ``CRLF "." LF`` and ``CR "." CR`` are content, so a message cannot
end early on our side and smuggle a second one that another MTA would read differently. On top,
a message holding any bare CR or bare LF (RFC 5321 §2.3.8: they MUST NOT occur except as CRLF)
is refused with `BARE_LINE_ENDING`, ``554 5.6.0``: 554 because that is the RFC 5321 §4.3.2 reply
for a message refused after its data, 5.6.0 (RFC 3463 "other or undefined media error") because
the content itself is at fault and resending it unchanged fails again. Postfix answers
``521 5.5.2`` and hangs up; we need not, since our reader cannot be desynchronised, and the
sender gets an ordinary bounce naming the cause. BODY=BINARYMIME content (BDAT only) may hold
any octets, so `ChunkReader` skips the line checks when ``binary`` is set (RFC 3030 §3).
"""

from __future__ import annotations

from typing import Final

from posthorn.smtp.codes import BARE_LINE_ENDING, LINE_TOO_LONG, MESSAGE_TOO_BIG, Reply

__all__ = ["ChunkReader", "DataReader"]

_END: Final = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4: the end of mail data indicator
# Proper prefixes of _END, longest first: the tail of a chunk that may be the marker's start.
_MARKER_STARTS: Final = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")
# Gravity of the content errors: the gravest one found is the one reported.
_RANK: Final = {MESSAGE_TOO_BIG: 1, LINE_TOO_LONG: 2, BARE_LINE_ENDING: 3}
_BARE: Final = _RANK[BARE_LINE_ENDING]
_LONG: Final = _RANK[LINE_TOO_LONG]


class _ContentChecks:
    """What DATA and BDAT content share: size, line length, bare CR/LF, 8-bit, the error."""

    def __init__(self, max_size: int, max_line: int) -> None:
        if max_size < 0 or max_line < 3:
            raise ValueError("max_size must be >= 0 and max_line >= 3")
        self.max_size = max_size
        self.max_line = max_line
        self.size = 0  # message octets so far (after unstuffing), also past an error
        self.error: Reply | None = None
        self.done = False
        self.seen_8bit = False  # some octet >= 0x80 (worth logging: 8BITMIME undeclared?)
        self._rank = 0  # gravity of self.error, 0 when None
        self._line = 0  # non-LF octets of the current, unfinished line
        self._check_lines = True

    def _account(self, out: bytes, bare: bool) -> bytes:
        """Record one stretch of message octets; return it, or b"" once the message failed."""
        if bare:
            self._fail(BARE_LINE_ENDING)
        if self._check_lines and self._rank < _LONG and out:
            # RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF (the
            # stuffed dot not counted; ``out`` is already unstuffed).
            self._line = _line_tail(out, self._line, self.max_line)
            if self._line < 0:
                self._fail(LINE_TOO_LONG)
        self.size += len(out)
        if self.size > self.max_size:  # RFC 1870 §6.3, the size counted as the RFC says
            self._fail(MESSAGE_TOO_BIG)
        if not self.seen_8bit and not out.isascii():
            self.seen_8bit = True
        return out if self.error is None else b""

    def _fail(self, reply: Reply) -> None:
        rank = _RANK[reply]
        if rank > self._rank:
            self.error, self._rank = reply, rank


class DataReader(_ContentChecks):
    """The DATA stream after the 354 reply, fed in chunks exactly as read from the socket.

    ``feed`` returns the unstuffed message octets ready for the spool. After the end marker
    ``done`` is True and ``rest`` holds the octets that followed it (pipelined commands, RFC 2920
    §3.1); they are never message octets. ``size``, ``error`` and ``seen_8bit`` as described in
    the module docstring.
    """

    def __init__(self, max_size: int, max_line: int = 1000) -> None:
        super().__init__(max_size, max_line)
        self.rest = b""
        # The stream starts at the beginning of a line, as if after a CRLF: carrying a virtual
        # CRLF makes ".\r\n" at the very start the end marker and unstuffs a first line "..x".
        self._carry = b"\r\n"
        self._virtual = True

    @property
    def buffered(self) -> int:
        """Octets held back from the last chunk (a possible start of the end marker), ≤ 4."""
        return len(self._carry) - (2 if self._virtual else 0)

    def feed(self, chunk: bytes) -> bytes:
        """Take the next raw chunk; return the message octets it completes (maybe b"")."""
        if self.done:
            self.rest += chunk
            return b""
        buf = self._carry + chunk if self._carry else chunk
        end = buf.find(_END)
        if end >= 0:
            body = buf[: end + 2]  # the CRLF before "." ends the message's last line
            self.rest = buf[end + 5 :]
            self._carry = b""
            self.done = True
        else:
            keep = _marker_start(buf)
            body = buf[: len(buf) - keep]
            self._carry = buf[len(buf) - keep :]
        # RFC 5321 §4.5.2: a line starting with "." has that first "." removed. A "\r\n." never
        # straddles two bodies: a body never ends in "\r" or "\r\n" that the next one continues.
        out = body.replace(b"\r\n.", b"\r\n")
        if self._virtual and out:
            out = out[2:]  # drop the virtual CRLF (a non-empty body starts with it)
            self._virtual = False
        return self._account(out, self._rank < _BARE and _has_bare_line_ending(out))


class ChunkReader(_ContentChecks):
    """BDAT content (RFC 3030 §2): octets counted exactly, no dot-stuffing, no end marker.

    One reader serves all BDAT chunks of a message, so the line and CR/LF checks carry across
    chunks. Call ``finish()`` after the chunk of BDAT LAST: it settles a CR left at the very end
    and returns ``b"\\r\\n"`` to append when the content does not end with a line end (RFC 5322
    §2.3 makes that legal for BDAT; DATA always ends so, and DKIM's canonical body is the same
    either way, RFC 6376 §3.4.3). With ``binary`` (BODY=BINARYMIME, RFC 3030 §3) bare CR/LF and
    long lines are legal and nothing is appended.
    """

    def __init__(self, max_size: int, max_line: int = 1000, *, binary: bool = False) -> None:
        super().__init__(max_size, max_line)
        self.binary = binary
        self._check_lines = not binary
        self._pending_cr = False  # the last octet so far was a CR: the next must be LF
        self._ends_with_lf = True  # nothing, or a complete last line, so far

    def feed(self, chunk: bytes) -> bytes:
        """Take the next raw octets of a BDAT chunk; return them, or b"" after an error."""
        if self.done:
            raise RuntimeError("ChunkReader.feed after finish()")
        if not chunk:
            return b""
        bare = False
        if not self.binary and self._rank < _BARE:
            crlf = chunk.count(b"\r\n")
            cr = chunk.count(b"\r")
            lf = chunk.count(b"\n")
            if self._pending_cr:
                if chunk[0] == 0x0A:
                    lf -= 1  # completes the CRLF split over two chunks
                else:
                    bare = True  # RFC 5321 §2.3.8: the previous CR stood alone
            self._pending_cr = chunk[-1] == 0x0D
            cr -= self._pending_cr  # judged with the next chunk, or in finish()
            bare = bare or cr != crlf or lf != crlf
        self._ends_with_lf = chunk[-1] == 0x0A
        return self._account(chunk, bare)

    def finish(self) -> bytes:
        """End of BDAT LAST: settle the trailing state; return octets to append (maybe b"")."""
        if self.done:
            return b""
        self.done = True
        if self.binary or self.size == 0:
            return b""
        if self._pending_cr:
            self._fail(BARE_LINE_ENDING)
            return b""
        if self._ends_with_lf:
            return b""
        return self._account(b"\r\n", False)


def _marker_start(buf: bytes) -> int:
    """Length of the longest tail of ``buf`` that may begin the end marker (0..4)."""
    for start in _MARKER_STARTS:
        if buf.endswith(start):
            return len(start)
    return 0


def _has_bare_line_ending(data: bytes) -> bool:
    """True when some CR is not followed by LF or some LF is not preceded by CR.

    Exact for a DATA body: a body never ends in a CR whose LF starts the next one (see feed).
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def _line_tail(data: bytes, carried: int, limit: int) -> int:
    """Non-LF octets after the last LF, counting ``carried`` from before ``data``; -1 when some
    line has ``limit`` non-LF octets (so, with its LF, more than ``limit`` octets).

    From each line start the next LF must come within ``limit - carried`` octets; ``rfind`` of
    the last LF in that window jumps over every shorter line in it at once, so the loop runs
    about twice per ``limit`` octets, not once per line.
    """
    n = len(data)
    pos = 0
    room = limit - carried
    while pos + room <= n:
        lf = data.rfind(b"\n", pos, pos + room)
        if lf < 0:
            return -1
        pos, carried, room = lf + 1, 0, limit
    lf = data.rfind(b"\n", pos)
    return carried + n - pos if lf < 0 else n - lf - 1
