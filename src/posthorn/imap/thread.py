"""IMAP THREAD (RFC 5256 §3, §4): ORDEREDSUBJECT and REFERENCES threading of search results.

Invariants:
- Each searched message appears exactly once in the result; a ``ThreadNode`` without a
  candidate is a dummy (a missing parent that holds siblings together).
- No recursion anywhere: a reply chain thousands deep (mailing lists) must not hit Python's
  recursion limit, so trees are built, sorted, pruned and written with explicit stacks, and
  loops in References are refused when links are made (RFC 5256 §2.4 step 1A).
- Sibling order is by sent date (RFC 5256 §2.2, `posthorn.imap.search.sent_datetime`), ties by
  sequence number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from posthorn.imap.search import (
    Candidate,
    Needs,
    SearchContext,
    SearchQuery,
    check_charset,
    parse_keys,
    run_search,
    sent_datetime,
)
from posthorn.imap.search import needs as search_needs
from posthorn.imap.sort import base_subject, collate
from posthorn.imap.values import Atom, ParseError, Value, astring
from posthorn.mail.headers import msg_ids

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")  # advertised as THREAD=<name>


@dataclass(frozen=True)
class ThreadQuery:
    algorithm: str
    search: SearchQuery


@dataclass(slots=True)
class ThreadNode:
    """One message of a thread (``candidate`` None: a dummy) and its replies, in order."""

    candidate: Candidate | None
    children: list[ThreadNode] = field(default_factory=list)


def parse_thread(args: Sequence[Value], *, utf8: bool = False) -> ThreadQuery:
    """``algorithm charset search-key+`` (RFC 5256 §3)."""
    del utf8  # strings are read as UTF-8 in both modes (see parse_search)
    if len(args) < 2 or not isinstance(args[0], Atom):
        raise ParseError("THREAD needs an algorithm, a charset and search keys")
    algorithm = args[0].upper()
    if algorithm not in ALGORITHMS:
        raise ParseError("unknown threading algorithm")
    charset = check_charset(astring(args[1], "charset"))
    return ThreadQuery(algorithm, SearchQuery(parse_keys(args[2:]), charset))


def needs(query: ThreadQuery) -> Needs:
    """Threading reads the envelope and references of every match."""
    return search_needs(query.search) | Needs(info=True)


async def run_thread(
    q: ThreadQuery, candidates: Sequence[Candidate], ctx: SearchContext
) -> list[ThreadNode]:
    matches = await run_search(q.search, candidates, ctx)
    if q.algorithm == "ORDEREDSUBJECT":
        return ordered_subject(matches)
    return references(matches)


# ---------------------------------------------------------------------------------------------
# Sent-date order (RFC 5256 §2.2), shared by both algorithms

_DateKey = tuple[datetime, int]


def _date_key(c: Candidate) -> _DateKey:
    return sent_datetime(c.meta), c.seq


def ordered_subject(matches: Sequence[Candidate]) -> list[ThreadNode]:
    """RFC 5256 §3 ORDEREDSUBJECT: one thread per base subject, ordered by the sent date of
    its first message; the first message is the parent of all the others, in date order."""
    threads: dict[str, list[Candidate]] = {}
    for c in sorted(matches, key=_date_key):
        subject = base_subject(c.meta.info.envelope.subject if c.meta.info else None)[0]
        threads.setdefault(collate(subject), []).append(c)
    roots = [ThreadNode(msgs[0], [ThreadNode(m) for m in msgs[1:]]) for msgs in threads.values()]
    roots.sort(key=lambda n: _date_key(n.candidate) if n.candidate else _NEVER)
    return roots


_NEVER = (datetime.max, 0)


# ---------------------------------------------------------------------------------------------
# REFERENCES (RFC 5256 §3, "REFERENCES" algorithm steps 1-6)


class _Box:
    """A message-id table entry: a message or a dummy, with its links (the RFC's container)."""

    __slots__ = ("cand", "children", "parent", "refwd", "subject")

    def __init__(self, cand: Candidate | None) -> None:
        self.cand = cand
        self.parent: _Box | None = None
        self.children: list[_Box] = []
        self.subject = ""
        self.refwd = False
        if cand is not None and cand.meta.info is not None:
            subject, self.refwd = base_subject(cand.meta.info.envelope.subject)
            self.subject = collate(subject)

    def is_ancestor_of(self, other: _Box) -> bool:
        if not self.children:  # the common case, and it keeps long chains linear
            return other is self
        node: _Box | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def adopt(self, child: _Box) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def date_key(self) -> _DateKey:
        """Sort key; a dummy sorts as its first child (children are sorted before it)."""
        box = self
        while box.cand is None and box.children:
            box = box.children[0]
        return _date_key(box.cand) if box.cand is not None else _NEVER


def references(matches: Sequence[Candidate]) -> list[ThreadNode]:
    """RFC 5256 §3 REFERENCES threading of ``matches`` (any order)."""
    ordered = sorted(matches, key=lambda c: c.seq)
    table, boxes = _id_table(ordered)
    for c, box in zip(ordered, boxes, strict=True):
        _link(table, box, c)
    # (2) every message without a parent is a child of the root
    root = _Box(None)
    for box in table.values():
        if box.parent is None and (box.cand is not None or box.children):
            root.children.append(box)
            box.parent = root
    _prune(root)
    # (4) sort the top level by sent date; a dummy sorts by its first child, sorted first
    for box in root.children:
        if box.cand is None:
            box.children.sort(key=_Box.date_key)
    root.children.sort(key=_Box.date_key)
    _group_subjects(root)
    _sort_all(root)
    return _export(root)


def _id_table(ordered: Sequence[Candidate]) -> tuple[dict[str, _Box], list[_Box]]:
    """Step 1 rules for Message-IDs: a message without a valid one, or a later duplicate of one
    already seen, gets a unique id, so it can be neither a parent nor a loop."""
    table: dict[str, _Box] = {}
    boxes: list[_Box] = []
    for c in ordered:
        box = _Box(c)
        ids = msg_ids(c.meta.info.envelope.message_id if c.meta.info else None)
        key = ids[0] if ids else ""
        if not key or key in table:
            key = f"\x00{c.seq}"  # cannot collide with "<...>" ids
        table[key] = box
        boxes.append(box)
    return table, boxes


def _link(table: dict[str, _Box], box: _Box, c: Candidate) -> None:
    """Steps 1A and 1B for one message. Message-ID comparisons are case-sensitive."""
    refs = c.meta.info.references if c.meta.info else ()
    # (1A) chain the references: each one the parent of the next, unless the child already
    # has a parent (the header may be truncated) or the link would make a loop
    prev: _Box | None = None
    for ref in refs:
        cur = table.get(ref)
        if cur is None:
            cur = table[ref] = _Box(None)  # a dummy, reused for later references
        if prev is not None and cur.parent is None and not cur.is_ancestor_of(prev):
            prev.adopt(cur)
        prev = cur
    # (1B) the last reference is this message's parent, replacing any link made in 1A;
    # without references the message has no parent
    if box.parent is not None:
        box.parent.children.remove(box)
        box.parent = None
    if prev is not None and not box.is_ancestor_of(prev):
        prev.adopt(box)


def _prune(root: _Box) -> None:
    """(3) Remove dummies without children; splice a dummy's children into its place, except
    that several children are not promoted to the root level (the dummy stays there)."""
    # post-order without recursion: children are pruned before their parent is looked at
    order: list[_Box] = []
    stack = [root]
    while stack:
        box = stack.pop()
        order.append(box)
        stack.extend(box.children)
    for box in reversed(order):
        kept: list[_Box] = []
        for child in box.children:
            if child.cand is not None or (box is root and len(child.children) > 1):
                kept.append(child)
                continue
            for grandchild in child.children:  # empty for a childless dummy: it goes
                grandchild.parent = box
                kept.append(grandchild)
            child.children = []
        box.children = kept


def _group_subjects(root: _Box) -> None:
    """(5) Gather top-level threads with the same base subject."""

    def thread_subject(box: _Box) -> str:  # (5B i) a dummy's subject is its first child's
        return box.children[0].subject if box.cand is None and box.children else box.subject

    # (5A, 5B) one message per subject, preferring a dummy, then a non-reply
    table: dict[str, _Box] = {}
    for box in root.children:
        subject = thread_subject(box)
        if not subject:
            continue
        old = table.get(subject)
        if old is None or (
            old.cand is not None and (box.cand is None or (old.refwd and not box.refwd))
        ):
            table[subject] = box
    # (5C) merge each thread into the one in the table
    for box in list(root.children):
        subject = thread_subject(box)
        if not subject or box.parent is not root:  # empty, or already merged into a dummy
            continue
        old = table[subject]
        if old is box:
            continue
        if old.cand is None and box.cand is None:
            for child in list(box.children):
                old.adopt(child)
            root.children.remove(box)
        elif old.cand is None or (box.refwd and not old.refwd):
            old.adopt(box)
        else:
            dummy = _Box(None)
            index = root.children.index(old)
            root.children[index] = dummy
            dummy.parent = root
            old.parent = None
            dummy.adopt(old)
            dummy.adopt(box)
            table[subject] = dummy


def _sort_all(root: _Box) -> None:
    """(6) Sort every set of siblings by sent date, the deepest sets first, so that a dummy
    (only ever at the top) sorts by its already-sorted first child."""
    order: list[_Box] = []
    stack = [root]
    while stack:
        box = stack.pop()
        order.append(box)
        stack.extend(box.children)
    for box in reversed(order):
        box.children.sort(key=_Box.date_key)


def _export(root: _Box) -> list[ThreadNode]:
    out = ThreadNode(None)
    stack = [(root, out)]
    while stack:
        box, node = stack.pop()
        for child in box.children:
            sub = ThreadNode(child.cand)
            node.children.append(sub)
            stack.append((child, sub))
    return out.children


# ---------------------------------------------------------------------------------------------
# Response (RFC 5256 §4 thread-data)


def format_thread(nodes: Sequence[ThreadNode], *, uid: bool) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))``: a single reply continues the list, several are
    each parenthesised (thread-members / thread-nested); a dummy is only its children."""
    out = ["* THREAD"]
    if nodes:
        out.append(" ")
    # work items: a string to write, or a node whose members come next
    stack: list[str | ThreadNode] = []
    for node in reversed(nodes):
        stack += [")", node, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        children = item.children
        if item.candidate is not None:
            c = item.candidate
            out.append(str(c.meta.uid if uid else c.seq))
            if children:
                out.append(" ")
        if len(children) == 1:
            stack.append(children[0])
        else:
            for child in reversed(children):
                stack += [")", child, "("]
    out.append("\r\n")
    return "".join(out).encode("ascii")
