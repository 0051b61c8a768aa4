"""The IMAP command reader (posthorn.imap.wire), byte by byte: RFC 9051 §2.2, §4, §7.5, §9,
RFC 7888 LITERAL+, RFC 3516 literal8. Every stream is also fed one octet at a time and must
give the same events."""

from __future__ import annotations

import time

import pytest

from posthorn.imap.values import Atom, Command, String
from posthorn.imap.wire import (
    MAX_NESTING,
    CommandReader,
    Continue,
    Event,
    LineTooLong,
    Reject,
)

BAD_NAME = "invalid command name"


def reader(limit: int = 1000, **kwargs: int) -> CommandReader:
    return CommandReader(literal_limit=lambda name: limit, **kwargs)


def drain(r: CommandReader, chunks: list[bytes]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        r.feed(chunk)
        while (event := r.next_event()) is not None:
            out.append(event)
    return out


def run(data: bytes, limit: int = 1000, **kwargs: int) -> list[Event]:
    """The events for ``data``, the same whether fed whole or one octet at a time."""
    whole = drain(reader(limit, **kwargs), [data])
    single = drain(reader(limit, **kwargs), [data[i : i + 1] for i in range(len(data))])
    assert single == whole
    return whole


def one(data: bytes, **kwargs: int) -> Event:
    events = run(data, **kwargs)
    assert len(events) == 1, events
    return events[0]


def bad(tag: str | None, text: str) -> Reject:
    return Reject(tag, "BAD", None, text, close=False)


NOOP2 = Command("a2", "NOOP", ())


# --- tags and command names -------------------------------------------------------------------


def test_simple_command() -> None:
    assert one(b"a1 NOOP\r\n") == Command("a1", "NOOP", ())


def test_bare_lf_ends_a_line() -> None:
    assert one(b"a1 NOOP\n") == Command("a1", "NOOP", ())


def test_name_is_upper_cased_and_tag_kept() -> None:
    assert one(b"Tag.9 login bob pw\r\n") == Command("Tag.9", "LOGIN", (Atom("bob"), Atom("pw")))


def test_tag_may_hold_brackets_and_specials() -> None:
    assert one(b"a]b[c!#$&'-.;<=>?@^_`|}~ NOOP\r\n") == Command(
        "a]b[c!#$&'-.;<=>?@^_`|}~", "NOOP", ()
    )


@pytest.mark.parametrize(
    "line",
    [
        b"+ NOOP",
        b"* NOOP",
        b"a+1 NOOP",
        b'a"1 NOOP',
        b"a%1 NOOP",
        b"a*1 NOOP",
        b"a\\1 NOOP",
        b"a(1 NOOP",
        b"a{1 NOOP",
        b"\xc3\xa91 NOOP",
        b" a1 NOOP",
        b"a1\tNOOP",
        b"\x00a1 NOOP",
        b"a1\x00 NOOP",
    ],
)
def test_bad_tag_answers_untagged(line: bytes) -> None:
    assert run(line + b"\r\na2 NOOP\r\n") == [bad(None, "invalid tag"), NOOP2]


def test_empty_line() -> None:
    assert run(b"\r\n\na2 NOOP\r\n") == [bad(None, "empty command line")] * 2 + [NOOP2]


@pytest.mark.parametrize("line", [b"a1", b"a1 ", b"a1    "])
def test_missing_command_name(line: bytes) -> None:
    assert run(line + b"\r\na2 NOOP\r\n") == [bad("a1", "missing command name"), NOOP2]


@pytest.mark.parametrize(
    "line", [b"a1 (NOOP)", b"a1 NO(OP", b"a1 NOOP]", b"a1 \xc3\xa9", b'a1 "NOOP"', b"a1 {3}"]
)
def test_invalid_command_name(line: bytes) -> None:
    assert run(line + b"\r\na2 NOOP\r\n") == [bad("a1", BAD_NAME), NOOP2]


def test_uid_is_folded_into_the_name() -> None:
    assert one(b"a1 uid fetch 1:* FLAGS\r\n") == Command(
        "a1", "UID FETCH", (Atom("1:*"), Atom("FLAGS"))
    )
    assert one(b"a1 UID EXPUNGE\r\n") == Command("a1", "UID EXPUNGE", ())


def test_uid_without_command() -> None:
    assert one(b"a1 UID\r\n") == bad("a1", "missing command after UID")
    assert one(b"a1 UID (x)\r\n") == bad("a1", BAD_NAME)


def test_extra_and_trailing_spaces_are_tolerated() -> None:
    assert one(b"a1  SELECT   INBOX  \r\n") == Command("a1", "SELECT", (Atom("INBOX"),))


# --- atoms ------------------------------------------------------------------------------------


def test_fetch_with_section_is_one_atom() -> None:
    got = one(b"a1 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>)\r\n")
    assert got == Command(
        "a1",
        "FETCH",
        (Atom("1:*"), (Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (From)]<0.10>"))),
    )


def test_section_keeps_spaces_parens_and_quotes_as_sent() -> None:
    text = 'BODY[HEADER.FIELDS.NOT ("X-]"  To  (a)]'
    assert one(b"a1 FETCH 1 " + text.encode() + b"\r\n") == Command(
        "a1", "FETCH", (Atom("1"), Atom(text))
    )


def test_sections_nest_and_repeat() -> None:
    assert one(b"a1 X a[b [c] d]e[f]g\r\n") == Command("a1", "X", (Atom("a[b [c] d]e[f]g"),))


def test_mailbox_with_brackets() -> None:
    assert one(b"a1 SELECT [Gmail]/Sent\r\n") == Command("a1", "SELECT", (Atom("[Gmail]/Sent"),))


@pytest.mark.parametrize("arg", [b"BODY[TEXT", b"[Gmail", b'BODY[HEADER.FIELDS ("a])', b"a[[b]"])
def test_unterminated_section(arg: bytes) -> None:
    assert run(b"a1 X " + arg + b"\r\na2 NOOP\r\n") == [bad("a1", "unterminated [ in atom"), NOOP2]


def test_control_character_in_section() -> None:
    assert one(b"a1 FETCH 1 BODY[\x01]\r\n") == bad("a1", "control character in atom")


def test_atom_characters() -> None:
    got = one(b"a1 STORE 1 +FLAGS (\\Seen \\Answered $Junk) LIST % * ]x ~a\r\n")
    assert got == Command(
        "a1",
        "STORE",
        (
            Atom("1"),
            Atom("+FLAGS"),
            (Atom("\\Seen"), Atom("\\Answered"), Atom("$Junk")),
            Atom("LIST"),
            Atom("%"),
            Atom("*"),
            Atom("]x"),
            Atom("~a"),
        ),
    )


def test_utf8_atom_is_decoded() -> None:
    assert one("a1 SELECT Entwürfe/日本\r\n".encode()) == Command(
        "a1", "SELECT", (Atom("Entwürfe/日本"),)
    )


def test_invalid_utf8_atom() -> None:
    assert run(b"a1 SELECT \xff\xfe\r\na2 NOOP\r\n") == [
        bad("a1", "atom is not valid UTF-8"),
        NOOP2,
    ]


@pytest.mark.parametrize(("octet", "code"), [(b"\x01", "01"), (b"\t", "09"), (b"\x7f", "7f")])
def test_control_characters_outside_strings(octet: bytes, code: str) -> None:
    assert one(b"a1 X a " + octet + b"b\r\n") == bad("a1", f"invalid character 0x{code}")


def test_control_character_ends_an_atom() -> None:
    assert one(b"a1 X ab\x01\r\n") == bad("a1", "expected a space between arguments")


def test_nil_is_an_atom() -> None:
    assert one(b"a1 X NIL nil\r\n") == Command("a1", "X", (Atom("NIL"), Atom("nil")))


# --- quoted strings ---------------------------------------------------------------------------


def test_quoted_strings_and_escapes() -> None:
    got = one(b'a1 LOGIN "b o\\"b" "p\\\\w(){}[]%*" ""\r\n')
    assert got == Command("a1", "LOGIN", (String(b'b o"b'), String(b"p\\w(){}[]%*"), String(b"")))


def test_quoted_keeps_8bit_raw() -> None:
    assert one(b'a1 X "\xc3\xa9\xff\t"\r\n') == Command("a1", "X", (String(b"\xc3\xa9\xff\t"),))


@pytest.mark.parametrize("arg", [b'"abc', b'"a\\b"', b'"a\\', b'"a\rb"', b'"a', b'"\\\\\\"'])
def test_malformed_quoted_string(arg: bytes) -> None:
    assert run(b"a1 X " + arg + b"\r\na2 NOOP\r\n") == [bad("a1", "malformed quoted string"), NOOP2]


@pytest.mark.parametrize("args", [b'"a"b', b'"a""b"', b"(a)b", b"(a)(b)", b'a"b"', b"a(b)"])
def test_junk_after_an_argument(args: bytes) -> None:
    assert run(b"a1 X " + args + b"\r\na2 NOOP\r\n") == [
        bad("a1", "expected a space between arguments"),
        NOOP2,
    ]


# --- lists ------------------------------------------------------------------------------------


def test_nested_lists() -> None:
    got = one(b'a1 X (a (b "c") () ((d))) e\r\n')
    assert got == Command(
        "a1", "X", ((Atom("a"), (Atom("b"), String(b"c")), (), ((Atom("d"),),)), Atom("e"))
    )


def test_spaces_inside_parentheses_are_tolerated() -> None:
    assert one(b"a1 X ( a  b )\r\n") == Command("a1", "X", ((Atom("a"), Atom("b")),))


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (b"(a", "unbalanced parentheses: missing )"),
        (b"((a)", "unbalanced parentheses: missing )"),
        (b"a)", "unbalanced parentheses: unexpected )"),
        (b"(a))", "unbalanced parentheses: unexpected )"),
    ],
)
def test_unbalanced_parentheses(args: bytes, text: str) -> None:
    assert run(b"a1 X " + args + b"\r\na2 NOOP\r\n") == [bad("a1", text), NOOP2]


def test_nesting_limit() -> None:
    deep = b"(" * MAX_NESTING + b")" * MAX_NESTING
    got = one(b"a1 X " + deep + b"\r\n")
    assert isinstance(got, Command)
    value = got.args[0]
    for _ in range(MAX_NESTING - 1):
        assert isinstance(value, tuple) and len(value) == 1
        value = value[0]
    assert value == ()
    too_deep = b"(" * (MAX_NESTING + 1) + b")" * (MAX_NESTING + 1)
    assert run(b"a1 X " + too_deep + b"\r\na2 NOOP\r\n") == [
        bad("a1", "lists nested too deeply"),
        NOOP2,
    ]


# --- NUL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"a1 NO\x00OP", b"a1 X a\x00", b'a1 X "a\x00"', b"a1 X [\x00]"])
def test_nul_in_a_line(line: bytes) -> None:
    assert run(line + b"\r\na2 NOOP\r\n") == [bad("a1", "NUL octet in command"), NOOP2]


def test_nul_in_a_literal_is_refused_and_the_command_skipped() -> None:
    stream = b"a1 X {3}\r\na\x00b rest {4}\r\na2 NOOP\r\n"
    assert run(stream) == [Continue(), bad("a1", "NUL octet in literal"), NOOP2]


def test_nul_in_literal8_is_accepted() -> None:
    assert run(b"a1 APPEND INBOX ~{3}\r\na\x00b\r\n") == [
        Continue(),
        Command("a1", "APPEND", (Atom("INBOX"), String(b"a\x00b", literal=True, binary=True))),
    ]


# --- literals ---------------------------------------------------------------------------------


def test_synchronizing_literal() -> None:
    assert run(b"a1 APPEND INBOX (\\Seen) {5}\r\nhello\r\n") == [
        Continue(),
        Command("a1", "APPEND", (Atom("INBOX"), (Atom("\\Seen"),), String(b"hello", literal=True))),
    ]


def test_literals_in_the_middle_of_the_arguments() -> None:
    stream = b"a1 LOGIN {3}\r\nbob {6}\r\nse\r\nt\n\r\n"
    assert run(stream) == [
        Continue(),
        Continue(),
        Command("a1", "LOGIN", (String(b"bob", literal=True), String(b"se\r\nt\n", literal=True))),
    ]


def test_literal_inside_a_list_then_more_arguments() -> None:
    stream = b'a1 X (a {2}\r\n()) "b" {0}\r\n\r\n'
    assert run(stream) == [
        Continue(),
        Continue(),
        Command(
            "a1",
            "X",
            ((Atom("a"), String(b"()", literal=True)), String(b"b"), String(b"", literal=True)),
        ),
    ]


def test_literal_plus_sends_no_continue() -> None:
    assert run(b"a1 APPEND INBOX {5+}\r\nhello {0+}\r\n\r\na2 NOOP\r\n") == [
        Command(
            "a1",
            "APPEND",
            (Atom("INBOX"), String(b"hello", literal=True), String(b"", literal=True)),
        ),
        NOOP2,
    ]


def test_literal8_forms() -> None:
    assert run(b"a1 APPEND INBOX ~{2}\r\n\x00\xff ~{1+}\r\n\n\r\n") == [
        Continue(),
        Command(
            "a1",
            "APPEND",
            (
                Atom("INBOX"),
                String(b"\x00\xff", literal=True, binary=True),
                String(b"\n", literal=True, binary=True),
            ),
        ),
    ]


def test_literal_size_with_leading_zeros() -> None:
    assert run(b"a1 X {003+}\r\nabc\r\n") == [Command("a1", "X", (String(b"abc", literal=True),))]


def test_junk_after_a_literal() -> None:
    assert run(b"a1 X {1}\r\naB\r\na2 NOOP\r\n") == [
        Continue(),
        bad("a1", "expected a space between arguments"),
        NOOP2,
    ]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (b"{5}x", "a literal announcement must end the line"),
        (b"{5} ", "a literal announcement must end the line"),
        (b"{5} a", "a literal announcement must end the line"),
        (b"{x}", "invalid literal announcement"),
        (b"{5", "invalid literal announcement"),
        (b"{}", "invalid literal announcement"),
        (b"{-5}", "invalid literal announcement"),
        (b"{5-}", "invalid literal announcement"),
        (b"~{5", "invalid literal announcement"),
        (b"{ 5}", "invalid literal announcement"),
        (b"{9223372036854775808}", "literal size out of range"),
        (b"{" + b"9" * 5000 + b"}", "literal size out of range"),
        (b"a{5}", "expected a space between arguments"),
        (b'"a"{5}', "expected a space between arguments"),
    ],
)
def test_bad_literal_announcement(args: bytes, text: str) -> None:
    assert run(b"a1 X " + args + b"\r\na2 NOOP\r\n") == [bad("a1", text), NOOP2]


def test_syntax_error_before_a_literal_sends_no_continue() -> None:
    assert run(b'a1 X "unterminated {3}\r\na2 NOOP\r\n') == [
        bad("a1", "malformed quoted string"),
        NOOP2,
    ]


def test_rejected_line_skips_its_nonsynchronizing_literal() -> None:
    # The client sends the literal without waiting; it must not be read as a command.
    assert run(b"a1 X ) {11+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n") == [
        bad("a1", "unbalanced parentheses: unexpected )"),
        NOOP2,
    ]
    # The rest of the command goes too, with the literals it announces.
    stream = b"a1 X ) {11+}\r\na3 LOGOUT\r\n {3+}\r\nxyz more\r\na2 NOOP\r\n"
    assert run(stream) == [bad("a1", "unbalanced parentheses: unexpected )"), NOOP2]


def test_rejected_line_ending_in_a_synchronizing_literal() -> None:
    # No "+" is sent, so the client sends no literal: the next line is a command.
    assert run(b"a1 X ) {11}\r\na2 NOOP\r\n") == [
        bad("a1", "unbalanced parentheses: unexpected )"),
        NOOP2,
    ]


def test_literal_limit_depends_on_the_command() -> None:
    asked: list[str] = []

    def limit(name: str) -> int:
        asked.append(name)
        return 10 if name == "APPEND" else 2

    r = CommandReader(literal_limit=limit)
    events = drain(r, [b"a1 uid search {2}\r\nab\r\na2 APPEND x {10+}\r\n0123456789\r\n"])
    assert events == [
        Continue(),
        Command("a1", "UID SEARCH", (String(b"ab", literal=True),)),
        Command("a2", "APPEND", (Atom("x"), String(b"0123456789", literal=True))),
    ]
    assert asked == ["UID SEARCH", "APPEND"]


def test_limit_is_asked_when_the_literal_is_reached() -> None:
    limits = {"LOGIN": 0}
    r = CommandReader(literal_limit=lambda name: limits.get(name, 5))
    r.feed(b"a1 LOGIN {3}\r\na2 X {3}\r\nabc\r\n")
    assert r.next_event() == Reject("a1", "NO", "TOOBIG", "literal too large", close=False)
    limits["X"] = 2  # the session changes its mind between commands
    assert r.next_event() == Reject("a2", "NO", "TOOBIG", "literal too large", close=False)


def test_synchronizing_literal_too_large_is_refused_and_reading_goes_on() -> None:
    assert run(b"a1 APPEND INBOX {11}\r\na2 NOOP\r\n", limit=10) == [
        Reject("a1", "NO", "TOOBIG", "literal too large", close=False),
        NOOP2,
    ]


def test_largest_literal_size_is_parsed_and_refused() -> None:
    assert one(b"a1 X {9223372036854775807}\r\n") == Reject(
        "a1", "NO", "TOOBIG", "literal too large", close=False
    )


def test_nonsynchronizing_literal_too_large_closes() -> None:
    r = reader(10)
    events = drain(r, [b"a1 APPEND INBOX {11+}\r\nhello world\r\na2 NOOP\r\n"])
    assert events == [Reject("a1", "BAD", "TOOBIG", "literal too large", close=True)]
    assert r.pending() == 0
    r.feed(b"a3 NOOP\r\n")
    assert r.next_event() is None
    assert r.next_line(100) is None
    assert r.pending() == 0


def test_literal_at_the_limit_is_accepted() -> None:
    assert run(b"a1 X {10+}\r\n0123456789\r\n", limit=10) == [
        Command("a1", "X", (String(b"0123456789", literal=True),))
    ]


def test_command_size_limit_counts_lines_and_literals() -> None:
    head = b"a1 X {10}\r\n"  # 11 octets
    ok = head + b"0123456789\r\n"  # 11 + 10 + 2 = 23
    assert run(ok, max_command=23)[-1] == Command("a1", "X", (String(b"0123456789", literal=True),))
    assert run(ok, max_command=22) == [
        Continue(),
        Reject("a1", "BAD", "TOOBIG", "command too long", close=True),
    ]
    assert run(ok, max_command=20) == [
        Reject("a1", "BAD", "TOOBIG", "command too long", close=True)
    ]
    assert run(b"a1 NOOP\r\n", max_command=8) == [
        Reject("a1", "BAD", "TOOBIG", "command too long", close=True)
    ]


def test_literal_count_limit() -> None:
    stream = b"a1 X {1+}\r\na {1+}\r\nb {1+}\r\nc\r\n"
    assert run(stream, max_literals=3)[-1] == Command(
        "a1", "X", tuple(String(c, literal=True) for c in (b"a", b"b", b"c"))
    )
    assert run(stream, max_literals=2) == [
        Reject("a1", "BAD", "TOOBIG", "too many literals in one command", close=True)
    ]


def test_large_literal_is_read_in_linear_time() -> None:
    size = 50 * 1024 * 1024
    body = (bytes(range(1, 256)) * (size // 255 + 1))[:size]
    r = reader(size)
    r.feed(b"a1 APPEND INBOX {%d}\r\n" % size)
    assert r.next_event() == Continue()
    start = time.perf_counter()
    chunk = 64 * 1024
    for i in range(0, size, chunk):
        r.feed(body[i : i + chunk])
        assert r.next_event() is None
    r.feed(b"\r\n")
    got = r.next_event()
    elapsed = time.perf_counter() - start
    assert isinstance(got, Command) and got.name == "APPEND"
    literal = got.args[1]
    assert isinstance(literal, String) and literal.data == body
    assert elapsed < 5, elapsed


def test_literal_arriving_with_its_line_in_one_feed() -> None:
    body = b"x" * 100_000
    r = reader(len(body))
    r.feed(b"a1 APPEND INBOX {100000+}\r\n" + body + b"\r\na2 NOOP\r\n")
    assert r.next_event() == Command("a1", "APPEND", (Atom("INBOX"), String(body, literal=True)))
    assert r.next_event() == NOOP2


# --- overlong lines ---------------------------------------------------------------------------


def test_line_too_long_is_skipped_and_reading_goes_on() -> None:
    long = b"a1 SEARCH " + b"x" * 100
    assert run(long + b"\r\na2 NOOP\r\n", max_line=50) == [
        bad("a1", "command line too long"),
        NOOP2,
    ]


def test_line_at_the_limit_is_accepted() -> None:
    line = b"a1 X " + b"y" * 45  # 50 octets
    assert run(line + b"\r\n", max_line=50) == [Command("a1", "X", (Atom("y" * 45),))]
    assert run(line + b"z\r\n", max_line=50) == [bad("a1", "command line too long")]


def test_line_too_long_without_readable_tag() -> None:
    assert run(b"x" * 100 + b"\r\na2 NOOP\r\n", max_line=50) == [
        bad(None, "command line too long"),
        NOOP2,
    ]
    assert run(b"a+b " + b"x" * 100 + b"\na2 NOOP\n", max_line=50) == [
        bad(None, "command line too long"),
        NOOP2,
    ]


def test_line_too_long_after_a_literal_keeps_the_tag() -> None:
    stream = b"a1 X {1}\r\nz " + b"y" * 100 + b"\r\na2 NOOP\r\n"
    assert run(stream, max_line=50) == [Continue(), bad("a1", "command line too long"), NOOP2]


def test_overlong_line_is_not_buffered() -> None:
    r = reader(max_line=1000)
    r.feed(b"a1 X ")
    for _ in range(1000):
        r.feed(b"y" * 1000)
        assert r.next_event() is None
        assert r.pending() <= 1001
    r.feed(b"\r\na2 NOOP\r\n")
    assert r.next_event() == bad("a1", "command line too long")
    assert r.next_event() == NOOP2


def test_overlong_line_ending_in_a_nonsynchronizing_literal_skips_it() -> None:
    stream = b"a1 X " + b"y" * 100 + b" {9+}\r\na3 NOOP\r\n rest\r\na2 NOOP\r\n"
    assert run(stream, max_line=50) == [bad("a1", "command line too long"), NOOP2]


def test_overlong_line_ending_in_a_synchronizing_literal() -> None:
    # The client waits for "+", gets the BAD, and sends no literal.
    stream = b"a1 X " + b"y" * 100 + b" {9}\r\na2 NOOP\r\n"
    assert run(stream, max_line=50) == [bad("a1", "command line too long"), NOOP2]


# --- pipelining and buffer control ------------------------------------------------------------


def test_pipelined_commands_come_one_by_one() -> None:
    r = reader()
    r.feed(b"a1 NOOP\r\na2 NOOP\r\na3 CHECK\r\na4 NO")
    assert r.next_event() == Command("a1", "NOOP", ())
    assert r.pending() == len(b"a2 NOOP\r\na3 CHECK\r\na4 NO")
    assert r.next_event() == NOOP2
    assert r.next_event() == Command("a3", "CHECK", ())
    assert r.next_event() is None
    r.feed(b"OP\r\n")
    assert r.next_event() == Command("a4", "NOOP", ())
    assert r.pending() == 0


def test_discard_drops_pipelined_plaintext_after_starttls() -> None:
    r = reader()
    r.feed(b"a1 STARTTLS\r\na2 LOGIN bob pw\r\n")
    assert r.next_event() == Command("a1", "STARTTLS", ())
    assert r.pending() == len(b"a2 LOGIN bob pw\r\n")
    r.discard()
    assert r.pending() == 0
    assert r.next_event() is None
    r.feed(b"a3 NOOP\r\n")
    assert r.next_event() == Command("a3", "NOOP", ())


def test_discard_mid_literal_starts_afresh() -> None:
    r = reader()
    r.feed(b"a1 X {10}\r\nabc")
    assert r.next_event() == Continue()
    assert r.next_event() is None
    assert r.pending() == 3
    r.discard()
    assert r.pending() == 0
    r.feed(b"a2 NOOP\r\n")
    assert r.next_event() == NOOP2


# --- raw lines --------------------------------------------------------------------------------


def test_next_line_reads_raw_lines() -> None:
    r = reader()
    r.feed(b"a1 AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\n(not a command\nDONE")
    assert r.next_event() == Command("a1", "AUTHENTICATE", (Atom("PLAIN"),))
    assert r.next_line(100) == b"AGJvYgBwdw=="
    assert r.next_line(100) == b"(not a command"
    assert r.next_line(100) is None
    r.feed(b"\r")
    assert r.next_line(100) is None
    r.feed(b"\na2 NOOP\r\n")
    assert r.next_line(4) == b"DONE"
    assert r.next_event() == NOOP2


def test_next_line_too_long_is_consumed_unbuffered() -> None:
    r = reader()
    r.feed(b"*")
    for _ in range(100):
        r.feed(b"x" * 100)
        assert r.next_line(10) is None
        assert r.pending() <= 11
    r.feed(b"\r\nDONE\r\n")
    assert r.next_line(10) == LineTooLong()
    assert r.next_line(10) == b"DONE"


def test_next_line_length_limit_is_exact() -> None:
    r = reader()
    r.feed(b"12345\r\n123456\r\n123456")
    assert r.next_line(5) == b"12345"
    assert r.next_line(5) == LineTooLong()
    assert r.next_line(5) is None
    r.feed(b"\n")
    assert r.next_line(5) == LineTooLong()


def test_next_line_in_the_middle_of_a_command_is_a_bug() -> None:
    r = reader()
    r.feed(b"a1 X {3}\r\n")
    assert r.next_event() == Continue()
    with pytest.raises(RuntimeError):
        r.next_line(10)
