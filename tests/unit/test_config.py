"""Config loading: defaults, every key, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthorn.config import ConfigError, HostPort, ListenAddress, load_config, parse_listen

FULL = """
[server]
hostname = "mail.example.test"
data_dir = "/var/lib/posthorn"
domains = ["example.test", "Other.Test"]
shutdown_timeout = 5
[listen]
smtp = ["127.0.0.1:25"]
submission = ["127.0.0.1:587"]
submissions = ["127.0.0.1:465"]
lmtp = ["127.0.0.1:24"]
imap = ["127.0.0.1:143"]
imaps = ["127.0.0.1:993"]
pop3 = ["127.0.0.1:110"]
pop3s = ["127.0.0.1:995"]
http = ["[::1]:8080", "127.0.0.1:8080"]
[tls]
cert = ""
key = ""
[auth]
plaintext_on_loopback = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "posthorn.toml"
    path.write_text(text)
    return path


def test_local_default_without_file() -> None:
    config = load_config(None)
    assert config.server.hostname == "localhost"
    assert config.server.data_dir == Path("data")
    assert config.server.domains == ("localhost",)
    assert config.listen.smtp == (ListenAddress("127.0.0.1", 2525),)
    assert config.listen.submission == (ListenAddress("127.0.0.1", 2587),)
    assert config.listen.submissions == (ListenAddress("127.0.0.1", 2465),)
    assert config.listen.lmtp == (ListenAddress("127.0.0.1", 2424),)
    assert config.listen.imap == (ListenAddress("127.0.0.1", 2143),)
    assert config.listen.imaps == (ListenAddress("127.0.0.1", 2993),)
    assert config.listen.pop3 == (ListenAddress("127.0.0.1", 2110),)
    assert config.listen.pop3s == (ListenAddress("127.0.0.1", 2995),)
    assert config.listen.http == (ListenAddress("127.0.0.1", 8080),)
    assert config.tls.cert is None and config.tls.key is None
    assert config.auth.plaintext_on_loopback is True


def test_every_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.server.hostname == "mail.example.test"
    assert config.server.data_dir == Path("/var/lib/posthorn")
    assert config.server.domains == ("example.test", "other.test")
    assert config.server.shutdown_timeout == 5.0
    assert config.listen.smtp == (ListenAddress("127.0.0.1", 25),)
    assert config.listen.http == (ListenAddress("::1", 8080), ListenAddress("127.0.0.1", 8080))
    assert str(config.listen.http[0]) == "[::1]:8080"
    assert config.auth.plaintext_on_loopback is False
    assert config.source == tmp_path / "posthorn.toml"


def test_empty_list_disables_and_missing_key_keeps_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[listen]\npop3 = []\n"))
    assert config.listen.pop3 == ()
    assert config.listen.imap == (ListenAddress("127.0.0.1", 2143),)


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[server]\ndata_dir = "spool"\n'))
    assert config.server.data_dir == tmp_path / "spool"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nhostnme = 'x'\n", "server.hostnme: unknown key"),
        ("[sever]\n", "sever: unknown section"),
        ("[server]\nhostname = 5\n", "server.hostname: must be a string"),
        ("[server]\nhostname = 'bad host!'\n", "server.hostname: 'bad host!' is not a valid"),
        ("[listen]\nsmtp = '127.0.0.1:25'\n", "listen.smtp: must be a list"),
        ("[listen]\nsmtp = ['localhost:25']\n", "listen.smtp[0]: 'localhost:25'"),
        ("[listen]\nsmtp = ['127.0.0.1:99999']\n", "listen.smtp[0]: '127.0.0.1:99999': port"),
        ("[listen]\nsmtp = ['::1:25']\n", "listen.smtp[0]: '::1:25': write an IPv6 address"),
        ("[listen]\nsmtp = [25]\n", "listen.smtp[0]: must be an"),
        ("[listen]\nimap = ['127.0.0.1:25']\nsmtp = ['127.0.0.1:25']\n", "is also used by"),
        ("[tls]\ncert = 'missing.pem'\nkey = 'missing.key'\n", "tls.cert:"),
        ("[auth]\nplaintext_on_loopback = 'yes'\n", "auth.plaintext_on_loopback: must be true"),
        ("[server]\nshutdown_timeout = true\n", "server.shutdown_timeout: must be a number"),
        ("[server\n", "not valid TOML"),
        ("server = 3\n", "server: must be a table"),
        ("[server]\nuser = 1000\n", "server.user: must be a name or a number"),
        ("[server]\nuser = ' posthorn'\n", "server.user: ' posthorn' is not a valid user"),
        ("[server]\ngroup = 'mail'\n", "server.group: needs server.user"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert any(str(path) in p and expected in p for p in exc.value.problems), exc.value.problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nhostname = 1\nbogus = 2\n[auth]\nx = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(exc.value.problems) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:25") == ListenAddress("0.0.0.0", 25)
    assert parse_listen("[::]:0") == ListenAddress("::", 0)
    with pytest.raises(ValueError, match="not ADDRESS:PORT"):
        parse_listen("25")


def test_smtp_section(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[smtp]\nmax_message_size = "64K"\nmax_recipients = 5\ncommand_timeout = 1.5\n'
            "auth_on_smtp = true\nmax_connections_per_ip = 3\n",
        )
    )
    assert config.smtp.max_message_size == 64 * 1024
    assert config.smtp.max_recipients == 5
    assert config.smtp.command_timeout == 1.5
    assert config.smtp.auth_on_smtp is True
    assert config.smtp.max_connections_per_ip == 3
    assert load_config(None).smtp.max_message_size == 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[smtp]\nmax_message_size = "lots"\n', "smtp.max_message_size: must be a size"),
        ("[smtp]\nmax_message_size = 0\n", "smtp.max_message_size: must be a size"),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients: must be from 1"),
        ("[smtp]\ncommand_timeout = 'soon'\n", "smtp.command_timeout: must be seconds"),
        ("[smtp]\nauth_on_smtp = 1\n", "smtp.auth_on_smtp: must be true or false"),
        ("[smtp]\nmax_size = 1\n", "smtp.max_size: unknown key"),
    ],
)
def test_smtp_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert any(expected in p for p in exc.value.problems), exc.value.problems


def test_imap_section(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[imap]\nappend_limit = "1M"\nmax_connections = 10\nmax_connections_per_ip = 2\n'
            "autologout = 60\nlogin_timeout = 0.5\n",
        )
    )
    assert config.imap.append_limit == 1024 * 1024
    assert config.imap.max_connections == 10
    assert config.imap.max_connections_per_ip == 2
    assert config.imap.autologout == 60.0
    assert config.imap.login_timeout == 0.5
    default = load_config(None).imap
    assert default.autologout == 1800.0 and default.append_limit == 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[imap]\nappend_limit = "huge"\n', "imap.append_limit: must be a size"),
        ("[imap]\nmax_connections = 0\n", "imap.max_connections: must be from 1"),
        ("[imap]\nautologout = 'never'\n", "imap.autologout: must be seconds"),
        ("[imap]\nlogin_timeout = 0\n", "imap.login_timeout: must be from 0.1"),
        ("[imap]\nidle = 1\n", "imap.idle: unknown key"),
    ],
)
def test_imap_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert any(expected in p for p in exc.value.problems), exc.value.problems


def test_pop3_section(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[pop3]\nmax_connections = 10\nmax_connections_per_ip = 2\ntimeout = 900\n"
            "max_bad_commands = 3\n",
        )
    )
    assert config.pop3.max_connections == 10
    assert config.pop3.max_connections_per_ip == 2
    assert config.pop3.timeout == 900.0
    assert config.pop3.max_bad_commands == 3
    default = load_config(None).pop3
    assert default.timeout == 600.0  # RFC 1939 §3: at least 10 minutes
    assert default.max_connections == 1000 and default.max_connections_per_ip == 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pop3]\nmax_connections = 0\n", "pop3.max_connections: must be from 1"),
        ("[pop3]\nmax_connections_per_ip = true\n", "pop3.max_connections_per_ip: must be a"),
        ("[pop3]\ntimeout = 'long'\n", "pop3.timeout: must be seconds"),
        ("[pop3]\ntimeout = 0\n", "pop3.timeout: must be from 0.1"),
        ("[pop3]\nexpire = 1\n", "pop3.expire: unknown key"),
    ],
)
def test_pop3_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert any(expected in p for p in exc.value.problems), exc.value.problems


def test_outbound_section(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[outbound]\nnameservers = ["127.0.0.1:5353", "[::1]:53"]\nmx_port = 2525\n'
            'smarthost = "relay.example.test:587"\nsmarthost_user = "u"\n'
            'smarthost_password = "s3cr3t-pw"\nsmarthost_tls = "opportunistic"\nlifetime = "2d"\n'
            'delay_warning = "30m"\nretry_first = 1\nretry_max = "1h"\nmax_per_destination = 3\n'
            '[outbound.routes]\n"Inner.Example.test" = "10.1.2.3:2525"\n"v6.test" = "[::1]:25"\n',
        )
    )
    out = config.outbound
    assert out.nameservers == ("127.0.0.1:5353", "[::1]:53")
    assert out.mx_port == 2525 and out.smarthost == HostPort("relay.example.test", 587)
    assert (out.smarthost_user, out.smarthost_password, out.smarthost_tls) == (
        "u",
        "s3cr3t-pw",
        "opportunistic",
    )
    assert "s3cr3t-pw" not in repr(out)  # the password never reaches a log through repr
    assert (out.lifetime, out.delay_warning, out.retry_first, out.retry_max) == (
        172800.0,
        1800.0,
        1.0,
        3600.0,
    )
    assert out.route("inner.example.test") == HostPort("10.1.2.3", 2525)
    assert out.route("v6.test") == HostPort("::1", 25) and out.route("other.test") is None
    default = load_config(None).outbound
    assert (default.lifetime, default.delay_warning, default.mx_port) == (5 * 86400, 4 * 3600, 25)
    assert default.retry_first == 300 and default.retry_max == 4 * 3600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[outbound]\nlifetime = "soon"\n', "outbound.lifetime: must be a duration"),
        ("[outbound]\nlifetime = 0\n", "outbound.lifetime: 0 is out of range"),
        ('[outbound]\nsmarthost = "a:b"\n', "outbound.smarthost: 'a:b': the port must be"),
        ('[outbound]\nnameservers = ["dns.test"]\n', "is not an IP address"),
        ('[outbound]\nsmarthost_tls = "maybe"\n', 'must be "required"'),
        ('[outbound]\nsmarthost_password = "x"\n', "needs outbound.smarthost_user"),
        ('[outbound.routes]\n"x.test" = 25\n', 'outbound.routes.x.test: must be a "host:port"'),
        ("[outbound]\nmx_port = 0\n", "outbound.mx_port: must be from 1 to 65535"),
        ("[outbound]\nrelay = 1\n", "outbound.relay: unknown key"),
    ],
)
def test_outbound_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert any(expected in p for p in exc.value.problems), exc.value.problems


def test_service_user_and_group(tmp_path: Path) -> None:
    """`server.user`/`group`: whom `posthorn serve` started as root runs as (looked up at
    start, not here: the config may be checked on another machine)."""
    config = load_config(write(tmp_path, "[server]\nuser = 'posthorn'\ngroup = 'mail'\n"))
    assert (config.server.user, config.server.group) == ("posthorn", "mail")
    default = load_config(write(tmp_path, "[server]\n"))
    assert (default.server.user, default.server.group) == ("", "")
