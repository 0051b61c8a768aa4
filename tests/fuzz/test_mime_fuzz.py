"""Hypothesis fuzzing of the MIME scanner: it is total and its offsets are always consistent."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from posthorn.mail import mime
from posthorn.mail.headers import parse_address_list, parse_content_type, parse_params
from posthorn.mail.info import BodyPart, EnvelopeAddress, MessageInfo
from tests.fuzz.budget import budget

SAMPLES = [
    p.read_bytes() for p in sorted((Path(__file__).parent.parent / "data/mime").glob("*.eml"))
]
FUZZ = budget(300)

# --- invariants ------------------------------------------------------------------------------


def check_addresses(addresses: tuple[EnvelopeAddress, ...]) -> None:
    in_group = False
    for a in addresses:
        for value in (a.name, a.route, a.mailbox, a.host):
            if value is not None:
                value.encode("utf-8", "surrogateescape")
        if a.host is None:  # RFC 3501 §7.4.2 group markers: start and end alternate
            assert in_group == (a.mailbox is None)
            assert a.name is None and a.route is None
            in_group = not in_group
        else:
            assert a.mailbox is not None
    assert not in_group


def check_part(part: BodyPart, size: int) -> None:
    assert 0 <= part.header_offset <= part.body_offset <= part.end_offset <= size
    assert part.size == part.end_offset - part.body_offset
    assert 0 <= part.lines <= part.size
    assert part.type and part.subtype
    assert part.type == part.type.lower() and part.subtype == part.subtype.lower()
    assert all(k == k.lower() for k, _ in part.params)
    if part.type == "multipart":
        assert part.parts, "IMAP needs at least one part in a multipart"
        previous_end = part.body_offset
        for child in part.parts:
            assert previous_end <= child.header_offset
            assert child.end_offset <= part.end_offset
            previous_end = child.end_offset
            check_part(child, size)
    else:
        assert part.parts == ()
    if part.type == "message" and part.subtype in ("rfc822", "global"):
        assert part.message is not None
    if part.message is not None:
        inner = part.message.body
        assert (inner.header_offset, inner.end_offset) == (part.body_offset, part.end_offset)
        for field in ("from_", "sender", "reply_to", "to", "cc", "bcc"):
            check_addresses(getattr(part.message.envelope, field))
        check_part(inner, size)


def check(data: bytes) -> MessageInfo:
    info = mime._parse(data)  # the strict core: the safety net in parse_message would hide bugs
    assert mime.parse_message(data) == info
    assert info.size == len(data)
    assert info.header_size == info.body.body_offset
    assert (info.body.header_offset, info.body.end_offset) == (0, len(data))
    check_part(info.body, len(data))
    for field in ("from_", "sender", "reply_to", "to", "cc", "bcc"):
        check_addresses(getattr(info.envelope, field))
    assert MessageInfo.from_json(info.to_json()) == info
    return info


# --- generators ------------------------------------------------------------------------------

NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"content-type",
        b"Content-Transfer-Encoding",
        b"Content-Disposition",
        b"Content-Language",
        b"Subject",
        b"From",
        b"To",
        b"Cc",
        b"References",
        b"In-Reply-To",
        b"X-Junk",
        b"No colon here",
        b"",
    ]
)
PIECES = st.sampled_from(
    [
        b"multipart/mixed",
        b"multipart/digest",
        b"message/rfc822",
        b"text/plain",
        b"text",
        b"/",
        b";;;",
        b"; boundary=b",
        b'; boundary="b"',
        b"; name*0*=utf-8''%E2%82",
        b"; name*1*=%AC",
        b"; filename*=x''y",
        b'"',
        b"(",
        b")",
        b"<",
        b">",
        b"@",
        b",",
        b":",
        b";",
        b"\\",
        b"=",
        b"=?utf-8?q?x?=",
        b"a@b",
        b"g:",
        b"\xff\xfe",
        b"\x00",
        b" ",
        b"\r\n ",
        b"\n\t",
        b"--b",
    ]
)
VALUES = st.lists(PIECES | st.binary(max_size=6), max_size=8).map(b"".join)
HEADERS = st.lists(st.tuples(NAMES, VALUES).map(lambda nv: nv[0] + b":" + nv[1]), max_size=5).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)
BOUNDARIES = st.sampled_from([b"b", b"b-1", b"bb", b"=_x", b"a b"])
LEAF = st.builds(lambda h, body: h + b"\r\n" + body, HEADERS, st.binary(max_size=40) | VALUES)


def _multipart(
    subtype: bytes, boundary: bytes, children: list[bytes], close: bool, junk: bytes
) -> bytes:
    out = [b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n']
    out.append(junk)  # preamble
    for child in children:
        out.append(b"\r\n--" + boundary + b"\r\n" + child)
    if close:
        out.append(b"\r\n--" + boundary + b"--\r\n" + junk)
    return b"".join(out)


def _extend(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(
        _multipart,
        st.sampled_from([b"mixed", b"digest", b"alternative"]),
        BOUNDARIES,
        st.lists(children, max_size=4),
        st.booleans(),
        st.binary(max_size=8),
    ) | st.builds(lambda child: b"Content-Type: message/rfc822\r\n\r\n" + child, children)


MESSAGES = st.recursive(LEAF, _extend, max_leaves=12)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Take a message and cut, duplicate, or splice junk into it at random places."""
    data = draw(base)
    if draw(st.booleans()):
        data = data.replace(b"\r\n", b"\n")  # bare LF everywhere
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data)))
        j = draw(st.integers(i, min(len(data), i + 64)))
        op = draw(st.sampled_from(["cut", "dup", "junk", "truncate"]))
        if op == "cut":
            data = data[:i] + data[j:]
        elif op == "dup":
            data = data[:j] + data[i:j] + data[j:]
        elif op == "junk":
            data = data[:i] + draw(PIECES | st.binary(max_size=8)) + data[i:]
        else:
            data = data[:i]
    return data


# --- properties ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(mutated(MESSAGES))
def test_generated_mime_trees(data: bytes) -> None:
    check(data)


@FUZZ
@given(mutated(st.sampled_from(SAMPLES)))
def test_mutated_samples(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.integers(0, 120), st.sampled_from([b"multipart/mixed; boundary=x", b"message/rfc822"]))
def test_deep_nesting(depth: int, ctype: bytes) -> None:
    level = b"Content-Type: " + ctype + b"\r\n\r\n" + (b"--x\r\n" if b"multipart" in ctype else b"")
    check(level * depth + b"\r\nleaf\r\n")


@FUZZ
@given(st.text(alphabet=st.sampled_from('a@b.<>,;:"()\\[] \t\r\nx=?\udcff'), max_size=60))
def test_address_lists(value: str) -> None:
    check_addresses(parse_address_list(value))


@FUZZ
@given(st.text(alphabet=st.sampled_from("text/plain;=*0'%E2\"()\\ \t,abc\udcff"), max_size=60))
def test_content_type_values(value: str) -> None:
    parsed = parse_content_type(value)
    if parsed is not None:
        assert parsed[0] and parsed[1]
    parse_params(value.split(";"))
