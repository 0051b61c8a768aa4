"""Random command sequences through the real reader, session and store: no exception escapes,
every answer is a well-formed response line, and every tagged command gets its tagged answer."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import budget
from tests.integration.imap_driver import Dialogue, open_world

NAMES = [
    "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "LIST", "LSUB", "STATUS",
    "APPEND", "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH", "SORT",
    "THREAD", "COPY", "MOVE", "UID MOVE", "EXPUNGE", "UID EXPUNGE", "CLOSE", "UNSELECT", "NOOP",
    "CHECK", "ENABLE", "NAMESPACE", "GETQUOTAROOT", "ID", "CAPABILITY", "IDLE",
]  # fmt: skip
WORDS = [
    "INBOX", "Trash", "a/b", '""', "*", "%", "1", "1:*", "*:3", "$", "0", "4294967296",
    "(FLAGS)", "(BODY[])", "BODY.PEEK[1.MIME]", "(\\Seen)", "+FLAGS", "-FLAGS.SILENT",
    "ALL", "OR", "NOT", "SUBJECT", "hi", "(CHANGEDSINCE 1)", "(CONDSTORE)", "RETURN",
    "(MIN MAX)", "UTF-8", "(SUBJECT)", "REFERENCES", "QRESYNC", "IMAP4rev2", "(", ")",
    '"a\\"b"', "{3+}\r\nabc", "NIL", "(MESSAGES UIDNEXT)",
]  # fmt: skip
LINE = re.compile(rb"^(\* |\+ |[A-Za-z0-9]+ (OK|NO|BAD) )")
MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


@st.composite
def commands(draw: st.DrawFn) -> list[bytes]:
    out = []
    for i in range(draw(st.integers(1, 12))):
        name = draw(st.sampled_from(NAMES))
        args = draw(st.lists(st.sampled_from(WORDS), max_size=5))
        out.append(f"t{i} {name} {' '.join(args)}".rstrip().encode())
    return out


async def run(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async for world in open_world(Path(tmp)):
            d = Dialogue(world)
            await d.login()
            await d.send(b"A APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
            for line in lines:
                out = await d.send(line + b"\r\n")
                if d.mode.name == "IDLE":
                    out += await d.send(b"DONE\r\n")
                tag = line.split(b" ", 1)[0]
                if not d.closed:
                    assert re.search(rb"(^|\r\n)" + tag + rb" (OK|NO|BAD) ", out), (line, out)
                for response in re.split(rb"\r\n(?=[*+t] |A |L1 )", out):
                    assert not response or LINE.match(response), (line, out)
                assert b"SERVERBUG" not in out, (line, out)
                if d.closed:
                    break


@budget(60, slow=True)
@given(commands())
def test_random_sessions_never_break(lines: list[bytes]) -> None:
    asyncio.run(run(lines))
