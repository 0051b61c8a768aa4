"""LIST and LSUB: RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154
SPECIAL-USE, RFC 3348 CHILDREN.

`match_names` is pure (names and patterns in, matches out); `list_command` turns a parsed
command into response lines using the session's store and name encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posthorn.imap.names import decode_name
from posthorn.imap.values import Command, ParseError, Value, atom

if TYPE_CHECKING:
    from posthorn.imap.session import Session

DELIMITER = "/"
_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
MAX_PATTERNS = 50


@dataclass
class Entry:
    name: str
    exists: bool
    subscribed: bool
    special_use: str | None
    has_children: bool
    child_subscribed: bool = False


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything, ``%`` anything but the delimiter (RFC 9051 §6.3.9). A leading
    ``INBOX`` matches case-insensitively, as INBOX itself does."""
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    out = []
    for c in pattern:
        if c == "*":
            out.append(".*")
        elif c == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _parents(name: str) -> Iterable[str]:
    parts = name.split(DELIMITER)
    for i in range(1, len(parts)):
        yield DELIMITER.join(parts[:i])


def build_entries(
    existing: Sequence[tuple[str, str | None]], subscriptions: Iterable[str]
) -> dict[str, Entry]:
    """Every name LIST could report: mailboxes, their missing parents, and subscribed names."""
    subscribed = set(subscriptions)
    entries: dict[str, Entry] = {}
    for name, special in existing:
        entries[name] = Entry(name, True, name in subscribed, special, False)
    for name in list(entries) + list(subscribed):
        for parent in _parents(name):
            if parent not in entries:
                entries[parent] = Entry(parent, False, parent in subscribed, None, False)
            entries[parent].has_children = True
            if name in subscribed:
                entries[parent].child_subscribed = True
    for name in subscribed:
        if name not in entries:
            entries[name] = Entry(name, False, True, None, False)
    return entries


async def list_command(session: Session, cmd: Command) -> list[bytes]:
    args = list(cmd.args)
    lsub = cmd.name == "LSUB"
    selection: set[str] = set()
    returns: set[str] = set()
    status_items: list[str] = []
    if not lsub and args and isinstance(first := args[0], tuple):
        args.pop(0)
        selection = {atom(v, "selection option").upper() for v in first}
        if unknown := selection - _SELECTION:
            raise ParseError(f"unknown LIST selection option {sorted(unknown)[0][:30]}")
        if "RECURSIVEMATCH" in selection and selection <= {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
    if len(args) < 2:
        raise ParseError(f"{cmd.name} takes a reference and a mailbox pattern")
    reference = _text(args.pop(0), session.utf8)
    raw_patterns = args.pop(0)
    patterns = (
        [_text(p, session.utf8) for p in raw_patterns]
        if isinstance(raw_patterns, tuple) and not lsub
        else [_text(raw_patterns, session.utf8)]
    )
    if len(patterns) > MAX_PATTERNS:
        raise ParseError("too many LIST patterns")
    if args and not lsub:
        if len(args) != 2 or atom(args[0], "RETURN").upper() != "RETURN":
            raise ParseError("LIST: expected RETURN (options)")
        opts = args[1]
        if not isinstance(opts, tuple):
            raise ParseError("RETURN takes a parenthesised list")
        i = 0
        while i < len(opts):
            opt = atom(opts[i], "return option").upper()
            if opt not in _RETURN:
                raise ParseError(f"unknown LIST return option {opt[:30]}")
            returns.add(opt)
            if opt == "STATUS":  # RFC 5819
                i += 1
                if i >= len(opts) or not isinstance(opts[i], tuple):
                    raise ParseError("RETURN STATUS takes a list of status items")
                status_items = [atom(v, "status item").upper() for v in opts[i]]  # type: ignore[union-attr]
            i += 1
    elif args:
        raise ParseError(f"{cmd.name}: unexpected arguments")

    if not lsub and patterns == [""]:
        # RFC 9051 §6.3.9: the delimiter and root of the reference's hierarchy.
        return [b'* LIST (\\Noselect) "/" ""\r\n']

    account = session._user()
    boxes = await session.store.list_mailboxes(account)
    subs = await session.store.list_subscriptions(account)
    entries = build_entries([(b.name, b.special_use) for b in boxes], subs)
    regexes = [pattern_regex(reference + p) for p in patterns]
    subscribed_only = lsub or "SUBSCRIBED" in selection
    recursive = "RECURSIVEMATCH" in selection
    lines: list[bytes] = []
    ids = {b.name: b.id for b in boxes}
    for name in sorted(entries, key=lambda n: (n != "INBOX", n)):
        entry = entries[name]
        if not any(r.fullmatch(name) for r in regexes):
            continue
        attrs: list[str] = []
        extra = b""
        if subscribed_only:
            if not entry.subscribed:
                if recursive and entry.child_subscribed:
                    extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
                elif (
                    lsub and entry.child_subscribed and not _any_child_matches(regexes, name, subs)
                ):
                    attrs.append("\\Noselect")
                else:
                    continue
        elif not entry.exists and not entry.has_children:
            continue
        if not entry.exists:
            if lsub:
                if "\\Noselect" not in attrs:
                    attrs.append("\\Noselect")
            elif entry.has_children and not subscribed_only:
                attrs.append("\\Noselect" if not session.rev2 else "\\NonExistent")
            else:
                attrs.append("\\NonExistent")
        if not lsub:
            attrs.append("\\HasChildren" if entry.has_children else "\\HasNoChildren")
            if entry.subscribed and ("SUBSCRIBED" in returns or subscribed_only):
                attrs.append("\\Subscribed")
            if entry.special_use:
                attrs.append(entry.special_use)
        if "SPECIAL-USE" in selection and not entry.special_use:
            continue
        word = b"LSUB" if lsub else b"LIST"
        lines.append(
            b"* "
            + word
            + b" ("
            + " ".join(attrs).encode()
            + b') "/" '
            + session._out_name(name)
            + extra
            + b"\r\n"
        )
        if status_items and entry.exists:
            lines.append(await session.status_line(ids[name], name, status_items))
    return lines


def _any_child_matches(
    regexes: Sequence[re.Pattern[str]], name: str, subscribed: Iterable[str]
) -> bool:
    """RFC 3501 §6.3.9: LSUB shows an unsubscribed parent as \\Noselect only when the pattern
    (through ``%``) stops short of its subscribed children."""
    prefix = name + DELIMITER
    return any(s.startswith(prefix) and any(r.fullmatch(s) for r in regexes) for s in subscribed)


def _text(value: Value, utf8: bool) -> str:
    """A reference or pattern: astring or list-mailbox, decoded like a mailbox name."""
    return decode_name(value, utf8=utf8, what="mailbox pattern")
