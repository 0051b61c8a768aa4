"""The generic shape every parsed IMAP command takes, shared by the grammar and the handlers.

The wire layer (`posthorn.imap.wire`) turns octets into a `Command`: a tag, an upper-cased
command name and a tuple of `Value`s. It knows nothing about what a command means. Each
handler module reads the arguments it expects from that tuple (`posthorn.imap.fetch` the FETCH
items, `posthorn.imap.search` the SEARCH keys, the session everything else) and raises
`ParseError` when they do not fit, which the session answers with ``BAD``.

Values:
- `Atom`: a run of atom characters (RFC 9051 §9 ``atom`` / ``ASTRING-CHAR``, plus list
  wildcards ``%`` and ``*``, and flags like ``\\Seen``). An atom may contain one bracketed part
  whose inside keeps spaces and parentheses as sent, so a FETCH item such as
  ``BODY.PEEK[HEADER.FIELDS (From To)]<0.100>`` is one `Atom` whose text is exactly that.
  ``NIL`` is the atom ``NIL``; the handler decides whether NIL is allowed where it stands.
- `String`: a quoted string (escapes removed) or a literal, as raw octets.
  ``literal`` says which; ``binary`` marks a ``literal8`` (``~{n}``, RFC 3516).
- a parenthesised list is a ``tuple`` of `Value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Atom:
    text: str

    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True, slots=True)
class String:
    data: bytes
    literal: bool = False
    binary: bool = False

    def text(self) -> str:
        """The octets as UTF-8 (RFC 9051 §4.3: strings are UTF-8 once UTF8=ACCEPT or in rev2).
        Raises `ParseError` for invalid UTF-8."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("string is not valid UTF-8") from None


Value = Union[Atom, String, "tuple[Value, ...]"]


@dataclass(frozen=True, slots=True)
class Command:
    """One complete client command, literals included.

    ``name`` is upper-cased; ``UID FETCH`` and the other UID forms are folded into one name with
    a single space (``"UID FETCH"``), so ``args`` start after the subcommand.
    """

    tag: str
    name: str
    args: tuple[Value, ...]


class ParseError(Exception):
    """The arguments do not match the command's grammar: answer ``tag BAD <message>``.

    ``code`` is an optional response code without brackets (``"BADCHARSET (UTF-8)"``)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Refused(Exception):
    """The command is well-formed but cannot be done: answer ``tag NO [code] <message>``."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def astring(value: Value, what: str = "argument") -> str:
    """An atom or string argument as text (RFC 9051 ``astring``)."""
    if isinstance(value, Atom):
        return value.text
    if isinstance(value, String):
        return value.text()
    raise ParseError(f"{what}: expected a string, got a list")


def astring_bytes(value: Value, what: str = "argument") -> bytes:
    if isinstance(value, Atom):
        return value.text.encode("utf-8")
    if isinstance(value, String):
        return value.data
    raise ParseError(f"{what}: expected a string, got a list")


def atom(value: Value, what: str = "argument") -> str:
    if isinstance(value, Atom):
        return value.text
    raise ParseError(f"{what}: expected an atom")


def paren_list(value: Value, what: str = "argument") -> tuple[Value, ...]:
    if isinstance(value, tuple):
        return value
    raise ParseError(f"{what}: expected a parenthesised list")


def number(value: Value, what: str = "number", *, nz: bool = False, bits: int = 32) -> int:
    """RFC 9051 ``number`` (32-bit unsigned) / ``number64`` / ``nz-number``."""
    if not isinstance(value, Atom) or not value.text.isascii() or not value.text.isdigit():
        raise ParseError(f"{what}: expected a number")
    n = int(value.text)
    if n >= 1 << bits or (nz and n == 0):
        raise ParseError(f"{what}: out of range")
    return n
