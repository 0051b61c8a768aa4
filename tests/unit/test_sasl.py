"""SASL exchanges (posthorn.sasl): PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login),
client-line decoding (RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4)."""

from __future__ import annotations

import base64

import pytest

from posthorn.sasl import (
    MAX_IDENTITY_OCTETS,
    MAX_PASSWORD_OCTETS,
    MAX_RESPONSE_LINE,
    MECHANISMS,
    Credentials,
    Exchange,
    LoginExchange,
    PlainExchange,
    SASLCancelled,
    SASLError,
    UnknownMechanism,
    authzid_allowed,
    decode_response,
    new_exchange,
)

SECRET = "s3cr3t-pässword"


def run(exchange: Exchange, initial: bytes | None, *responses: bytes) -> bytes | Credentials:
    result = exchange.start(initial)
    for response in responses:
        assert isinstance(result, bytes), "exchange finished before all responses were fed"
        result = exchange.step(response)
    return result


# --- decode_response ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "decoded"),
    [
        (b"AHVzZXIAcGFzcw==", b"\x00user\x00pass"),
        (b"AHVzZXIAcGFzcw==\r\n", b"\x00user\x00pass"),
        (b"AHVzZXIAcGFzcw==\n", b"\x00user\x00pass"),
        (b"VXNlcm5hbWU6", b"Username:"),
        (b"=", b""),  # RFC 4954 §4: zero-length initial response
        (b"", b""),  # an empty continuation line is an empty response
        (b"\r\n", b""),
    ],
)
def test_decode_response(line: bytes, decoded: bytes) -> None:
    assert decode_response(line) == decoded


@pytest.mark.parametrize("line", [b"*", b"*\r\n", b"*\n"])
def test_decode_response_cancel(line: bytes) -> None:
    with pytest.raises(SASLCancelled):
        decode_response(line)


def test_cancel_is_a_sasl_error() -> None:
    # One ``except SASLError`` in a session covers cancel too (both are 501 in SMTP).
    assert issubclass(SASLCancelled, SASLError)


@pytest.mark.parametrize(
    "line",
    [
        b"AHVzZXIAcGFzcw",  # missing padding
        b"AHVzZXIAcGFzcw=",  # short padding
        b"AHVz ZXIAcGFzcw==",  # embedded space
        b" AHVzZXIAcGFzcw==",
        b"AHVzZXIAcGFzcw==\r\n\r\n",
        b"AHVzZXIA!GFzcw==",  # outside the alphabet
        b"AHVz=XIAcGFzcw==",  # non-terminal "=" (RFC 9051 §6.2.2)
        b"AHVzZXIAcGFzcw===",
        b"**",
        b"-_-_",  # URL-safe alphabet is not base64 here
        b"\x00\x01",
    ],
)
def test_decode_response_rejects_bad_base64(line: bytes) -> None:
    with pytest.raises(SASLError) as excinfo:
        decode_response(line)
    assert not isinstance(excinfo.value, SASLCancelled)


def test_decode_response_never_echoes_the_line() -> None:
    # A confused client may send its password unencoded: the message must not repeat it.
    with pytest.raises(SASLError) as excinfo:
        decode_response(b"hunter2!")
    assert "hunter2" not in str(excinfo.value)


def test_decode_response_bounds_the_line() -> None:
    at_limit = b"QUFB" * (MAX_RESPONSE_LINE // 4)
    assert decode_response(at_limit) == b"AAA" * (MAX_RESPONSE_LINE // 4)
    with pytest.raises(SASLError, match="too long"):
        decode_response(at_limit + b"QUFB")


# --- new_exchange -------------------------------------------------------------------------------


def test_mechanisms() -> None:
    assert MECHANISMS == ("PLAIN", "LOGIN")
    for name in MECHANISMS:
        assert new_exchange(name).mechanism == name


@pytest.mark.parametrize(("name", "cls"), [("plain", PlainExchange), ("Login", LoginExchange)])
def test_mechanism_names_are_case_insensitive(name: str, cls: type) -> None:
    assert isinstance(new_exchange(name), cls)


@pytest.mark.parametrize("name", ["CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "", "PLAIN "])
def test_unknown_mechanism(name: str) -> None:
    with pytest.raises(UnknownMechanism) as excinfo:
        new_exchange(name)
    # Catchable as either, as the session contract says.
    assert isinstance(excinfo.value, KeyError)
    assert isinstance(excinfo.value, SASLError)
    assert excinfo.value.mechanism == name


def test_unknown_mechanism_message_is_bounded_and_unquoted() -> None:
    with pytest.raises(UnknownMechanism) as excinfo:
        new_exchange("X" * 500)
    message = str(excinfo.value)
    assert message.startswith("unsupported SASL mechanism 'XXXX")
    assert len(message) < 80


def test_each_exchange_is_fresh() -> None:
    assert new_exchange("PLAIN") is not new_exchange("PLAIN")


# --- PLAIN (RFC 4616) -------------------------------------------------------------------------


def test_plain_initial_response() -> None:
    # RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf".
    result = run(PlainExchange(), b"\x00tim\x00tanstaaftanstaaf")
    assert result == Credentials(authcid="tim", password="tanstaaftanstaaf", authzid="")


def test_plain_with_authzid() -> None:
    result = run(PlainExchange(), b"Ursel\x00Kurt\x00xipj3plmq")  # RFC 4616 §4
    assert result == Credentials(authcid="Kurt", password="xipj3plmq", authzid="Ursel")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    exchange = PlainExchange()
    assert exchange.start(None) == b""  # RFC 4954 §4: "334 " with an empty challenge
    assert exchange.step(b"\x00bob@example.org\x00pw") == Credentials("bob@example.org", "pw")


def test_plain_from_the_wire() -> None:
    line = base64.b64encode(b"\x00bob@example.org\x00" + SECRET.encode())
    result = run(new_exchange("PLAIN"), decode_response(line))
    assert result == Credentials("bob@example.org", SECRET)


def test_plain_utf8_identities_and_password() -> None:
    password = "\u043f\u0430\u0440\u043e\u043b\u044c \u2603 \u5bc6\u7801"  # Cyrillic, snowman, CJK
    message = f"\x00jörg@bücher.example\x00{password}".encode()
    result = run(PlainExchange(), message)
    assert result == Credentials("jörg@bücher.example", password)


def test_plain_password_may_hold_spaces_and_symbols() -> None:
    result = run(PlainExchange(), b"\x00bob\x00 pass word:\t*=")
    assert isinstance(result, Credentials)
    assert result.password == " pass word:\t*="


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        (b"", "exactly 2 NULs, found 0"),  # "=" initial response: nothing at all
        (b"bobpassword", "exactly 2 NULs, found 0"),
        (b"bob\x00password", "exactly 2 NULs, found 1"),
        (b"\x00bob\x00pass\x00word", "exactly 2 NULs, found 3"),
        (b"\x00\x00bob\x00password", "exactly 2 NULs, found 3"),
        (b"\x00bob\x00password\x00", "exactly 2 NULs, found 3"),
        (b"\x00\x00password", "empty authentication identity"),
        (b"\x00bob\x00", "empty password"),
        (b"\x00\x00", "empty authentication identity"),
        (b"\x00b\xffob\x00password", "authentication identity is not valid UTF-8"),
        (b"\xc3\x00bob\x00password", "authorization identity is not valid UTF-8"),
        (b"\x00bob\x00pass\xc3\x28word", "password is not valid UTF-8"),
        (b"\x00bob\x00\xed\xa0\x80", "password is not valid UTF-8"),  # encoded surrogate
    ],
)
def test_plain_rejects_malformed(message: bytes, complaint: str) -> None:
    with pytest.raises(SASLError, match=complaint):
        run(PlainExchange(), message)


def test_plain_errors_never_contain_the_password() -> None:
    for message in (
        b"\x00bob\x00hunter2\x00",
        b"\x00bob\x00hunter2\xff",
        b"\x00bob\x00hunter2" + b"x" * MAX_PASSWORD_OCTETS,
    ):
        with pytest.raises(SASLError) as excinfo:
            run(PlainExchange(), message)
        assert "hunter2" not in str(excinfo.value)
        assert "hunter2" not in repr(excinfo.value)


def test_plain_length_bounds() -> None:
    name = b"a" * MAX_IDENTITY_OCTETS
    password = b"p" * MAX_PASSWORD_OCTETS
    assert isinstance(run(PlainExchange(), name + b"\x00" + name + b"\x00" + password), Credentials)
    with pytest.raises(SASLError, match="authorization identity too long"):
        run(PlainExchange(), name + b"a\x00bob\x00pw")
    with pytest.raises(SASLError, match="authentication identity too long"):
        run(PlainExchange(), b"\x00" + name + b"a\x00pw")
    with pytest.raises(SASLError, match="password too long"):
        run(PlainExchange(), b"\x00bob\x00" + password + b"p")


def test_plain_sequence_errors_are_caller_bugs() -> None:
    exchange = PlainExchange()
    with pytest.raises(RuntimeError):
        exchange.step(b"\x00bob\x00pw")  # before start
    exchange.start(b"\x00bob\x00pw")
    with pytest.raises(RuntimeError):
        exchange.step(b"\x00bob\x00pw")  # after the credentials
    with pytest.raises(RuntimeError):
        exchange.start(None)


# --- LOGIN (draft-murchison-sasl-login) -------------------------------------------------------


def test_login_dialogue() -> None:
    exchange = LoginExchange()
    assert exchange.start(None) == b"Username:"
    assert exchange.step(b"bob@example.org") == b"Password:"
    assert exchange.step(SECRET.encode()) == Credentials("bob@example.org", SECRET, "")


def test_login_dialogue_from_the_wire() -> None:
    # The classic transcript: 334 VXNlcm5hbWU6 / 334 UGFzc3dvcmQ6.
    exchange = new_exchange("LOGIN")
    challenge = exchange.start(None)
    assert isinstance(challenge, bytes)
    assert base64.b64encode(challenge) == b"VXNlcm5hbWU6"
    challenge = exchange.step(decode_response(b"Ym9iQGV4YW1wbGUub3Jn\r\n"))
    assert isinstance(challenge, bytes)
    assert base64.b64encode(challenge) == b"UGFzc3dvcmQ6"
    assert exchange.step(decode_response(b"cGFzc3dvcmQ=\r\n")) == Credentials(
        "bob@example.org", "password"
    )


def test_login_initial_response_is_the_username() -> None:
    exchange = LoginExchange()
    assert exchange.start(b"bob") == b"Password:"
    assert exchange.step(b"pw") == Credentials("bob", "pw")


def test_login_utf8_password() -> None:
    result = run(LoginExchange(), None, "jörg".encode(), "Grüße ☃".encode())
    assert result == Credentials("jörg", "Grüße ☃")


@pytest.mark.parametrize(
    ("initial", "responses", "complaint"),
    [
        (None, [b""], "empty user name"),
        (b"", [], "empty user name"),  # AUTH LOGIN =
        (None, [b"bob", b""], "empty password"),
        (None, [b"b\x00ob"], "NUL in user name"),
        (None, [b"bob", b"pass\x00word"], "NUL in password"),
        (None, [b"\xff"], "user name is not valid UTF-8"),
        (None, [b"bob", b"\xc3"], "password is not valid UTF-8"),
        (None, [b"a" * (MAX_IDENTITY_OCTETS + 1)], "user name too long"),
        (None, [b"bob", b"p" * (MAX_PASSWORD_OCTETS + 1)], "password too long"),
    ],
)
def test_login_rejects_malformed(
    initial: bytes | None, responses: list[bytes], complaint: str
) -> None:
    with pytest.raises(SASLError, match=complaint):
        run(LoginExchange(), initial, *responses)


def test_login_sequence_errors_are_caller_bugs() -> None:
    exchange = LoginExchange()
    with pytest.raises(RuntimeError):
        exchange.step(b"bob")
    run(exchange, None, b"bob", b"pw")
    with pytest.raises(RuntimeError):
        exchange.step(b"again")
    with pytest.raises(RuntimeError):
        exchange.start(None)


# --- Credentials and the authorization identity ------------------------------------------------


def test_credentials_repr_hides_the_password() -> None:
    credentials = Credentials("bob@example.org", "hunter2", "")
    assert "hunter2" not in repr(credentials)
    assert "bob@example.org" in repr(credentials)


@pytest.mark.parametrize(
    ("authcid", "authzid", "allowed"),
    [
        ("bob@example.org", "", True),  # no authzid: act as yourself
        ("bob@example.org", "bob@example.org", True),
        ("bob@example.org", "Bob@EXAMPLE.org", True),  # same mailbox as the directory sees it
        ("jörg@bücher.example", "JÖRG@xn--bcher-kva.example", True),
        ("bob", "bob", True),
        ("bob@example.org", "alice@example.org", False),  # proxy authorization: refused
        ("bob@example.org", "bob@example.net", False),
        ("bob@example.org", "admin", False),
        ("bob", "Bob", False),  # not addresses: exact comparison only
        ("bob", "bob@example.org", False),
        ("not an address", "@@", False),
    ],
)
def test_authzid_allowed(authcid: str, authzid: str, allowed: bool) -> None:
    assert authzid_allowed(Credentials(authcid, "pw", authzid)) is allowed


def test_authzid_from_plain_message() -> None:
    result = run(PlainExchange(), b"alice@example.org\x00bob@example.org\x00pw")
    assert isinstance(result, Credentials)
    assert not authzid_allowed(result)
    result = run(PlainExchange(), b"bob@example.org\x00bob@example.org\x00pw")
    assert isinstance(result, Credentials)
    assert authzid_allowed(result)
