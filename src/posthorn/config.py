"""Typed configuration: one TOML file loaded into frozen dataclasses.

Without a file the local default applies (DESIGN.md "The roles"): every listener on 127.0.0.1
with the local-default ports, data directory ``./data``, mail domain ``localhost``, a
self-signed certificate made on first start. Every problem found while loading is collected
(not just the first) and names the file and the dotted key, so `posthorn check-config` can
print them all.

Relative paths in a file (``data_dir``, ``tls.cert``, ``tls.key``) are relative to the file's
directory, so a config works the same whatever directory the server is started from.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from posthorn.directory.errors import BadSize
from posthorn.directory.sizes import parse_size

SERVICES = (
    "smtp",
    "submission",
    "submissions",
    "lmtp",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "http",
)
"""Every listener name the config knows, in start order."""

LOCAL_DEFAULT_LISTEN: dict[str, tuple[str, ...]] = {
    "smtp": ("127.0.0.1:2525",),
    "submission": ("127.0.0.1:2587",),
    "submissions": ("127.0.0.1:2465",),
    "lmtp": ("127.0.0.1:2424",),  # not 2024: taken on the workplace machines
    "imap": ("127.0.0.1:2143",),
    "imaps": ("127.0.0.1:2993",),
    "pop3": ("127.0.0.1:2110",),
    "pop3s": ("127.0.0.1:2995",),
    "http": ("127.0.0.1:8080",),
}


class ConfigError(Exception):
    """Every problem found in one configuration, each naming its file and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback


@dataclass(frozen=True, slots=True)
class ServerConfig:
    hostname: str = "localhost"
    data_dir: Path = Path("data")
    domains: tuple[str, ...] = ("localhost",)
    shutdown_timeout: float = 10.0
    user: str = ""  # started as root: bind, read the TLS key, then run as this user
    group: str = ""  # ... and this group (default: the user's primary group)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    smtp: tuple[ListenAddress, ...] = ()
    submission: tuple[ListenAddress, ...] = ()
    submissions: tuple[ListenAddress, ...] = ()
    lmtp: tuple[ListenAddress, ...] = ()
    imap: tuple[ListenAddress, ...] = ()
    imaps: tuple[ListenAddress, ...] = ()
    pop3: tuple[ListenAddress, ...] = ()
    pop3s: tuple[ListenAddress, ...] = ()
    http: tuple[ListenAddress, ...] = ()

    def addresses(self, service: str) -> tuple[ListenAddress, ...]:
        value: tuple[ListenAddress, ...] = getattr(self, service)
        return value


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    plaintext_on_loopback: bool = True


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    """Limits of the SMTP listeners (DESIGN.md "Security defaults")."""

    max_message_size: int = 50 * 1024 * 1024  # advertised as SIZE (RFC 1870)
    max_recipients: int = 100  # RCPTs per message; past it 452 4.5.3 (RFC 5321 §4.5.3.1.8)
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: at least 5 minutes
    data_timeout: float = 600.0  # whole DATA/BDAT transfer (§4.5.3.2.5-6 set per-block minima)
    max_bad_commands: int = 10  # unknown or out-of-sequence commands before 421
    auth_on_smtp: bool = False  # offer AUTH on the MTA port 25 too


@dataclass(frozen=True, slots=True)
class IMAPConfig:
    """Limits of the IMAP listeners (DESIGN.md "Security defaults")."""

    append_limit: int = 50 * 1024 * 1024  # largest APPEND, advertised as APPENDLIMIT (RFC 7889)
    max_connections: int = 5000
    max_connections_per_ip: int = 50  # a mail client opens several; an office shares one IP
    autologout: float = 1800.0  # RFC 9051 §5.4: at least 30 minutes once logged in
    login_timeout: float = 60.0  # before login


@dataclass(frozen=True, slots=True)
class POP3Config:
    """Limits of the POP3 listeners (DESIGN.md "Security defaults")."""

    max_connections: int = 1000
    max_connections_per_ip: int = 20
    timeout: float = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
    max_bad_commands: int = 10  # unknown, malformed or out-of-state commands before closing


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str  # a host name or an IP address (IPv6 without brackets)
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """Outbound delivery (issue 6): routing, the smart host, retries and notices."""

    nameservers: tuple[str, ...] = ()  # "addr:port"; empty = /etc/resolv.conf
    mx_port: int = 25  # the port of every MX (tests on loopback change it)
    smarthost: HostPort | None = None  # everything not local and not routed goes here
    smarthost_user: str = ""
    smarthost_password: str = field(default="", repr=False)
    smarthost_tls: str = "required"  # "required" | "opportunistic" | "implicit" (port 465)
    smarthost_ca: Path | None = None  # PEM file of CAs to trust for the smart host (else system)
    routes: tuple[tuple[str, HostPort], ...] = ()  # domain -> next hop, before DNS
    lifetime: float = 5 * 86400.0  # give up (bounce) this long after acceptance
    delay_warning: float = 4 * 3600.0  # send a delay notice once, this long after acceptance
    retry_first: float = 300.0  # the first retry after 5 min, then doubling ...
    retry_max: float = 4 * 3600.0  # ... up to 4 h between tries
    max_connections: int = 100  # outbound SMTP sessions at once
    max_per_destination: int = 10  # ... to one destination domain or next hop
    connect_timeout: float = 30.0
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2 (5 min; DATA end gets 10)

    def route(self, domain: str) -> HostPort | None:
        for name, hop in self.routes:
            if name == domain:
                return hop
        return None


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: bool = False  # serve the http listeners over TLS with the [tls] certificate


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    web: WebConfig = field(default_factory=WebConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    source: Path | None = None
    """The file this came from; None for the local default."""


def local_default() -> Config:
    listen = {k: tuple(parse_listen(v) for v in vs) for k, vs in LOCAL_DEFAULT_LISTEN.items()}
    return Config(listen=ListenConfig(**listen))


def parse_listen(text: str) -> ListenAddress:
    """``"127.0.0.1:25"``, ``"[::1]:25"``, ``"0.0.0.0:25"``; port 0 picks a free port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not ADDRESS:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port_text}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
    return ListenAddress(str(ip), int(port_text))


def load_config(path: Path | None) -> Config:
    """The config in ``path``, or the local default when ``path`` is None."""
    if path is None:
        return local_default()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read: {e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    return _Loader(path).load(raw)


class _Loader:
    """Turns the parsed TOML into `Config`, collecting every problem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}: {key}: {message}")

    def load(self, raw: dict[str, Any]) -> Config:
        sections: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "server": self.server,
            "listen": self.listen,
            "tls": self.tls,
            "auth": self.auth,
            "smtp": self.smtp,
            "imap": self.imap,
            "outbound": self.outbound,
            "web": self.web,
            "pop3": self.pop3,
        }
        built: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in sections:
                self.problem(name, f"unknown section (known: {', '.join(sections)})")
            elif not isinstance(value, dict):
                self.problem(name, "must be a table, [" + name + "]")
            else:
                built[name] = sections[name](value)
        built.setdefault("listen", local_default().listen)
        config = Config(**built, source=self.path)
        self.check_duplicates(config.listen)
        if self.problems:
            raise ConfigError(self.problems)
        return config

    def unknown(self, section: str, table: Mapping[str, Any], cls: type) -> None:
        known = [f.name for f in fields(cls)]
        for key in table:
            if key not in known:
                self.problem(f"{section}.{key}", f"unknown key (known: {', '.join(known)})")

    def typed(self, key: str, value: object, kind: type | tuple[type, ...], what: str) -> bool:
        # bool is an int in Python; TOML keeps them apart and so do we.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.problem(key, f"must be {what}, not {value!r}")
            return False
        if not isinstance(value, kind):
            self.problem(key, f"must be {what}, not {value!r}")
            return False
        return True

    def server(self, t: Mapping[str, Any]) -> ServerConfig:
        self.unknown("server", t, ServerConfig)
        d = ServerConfig()
        out: dict[str, Any] = {}
        if "hostname" in t and self.typed("server.hostname", t["hostname"], str, "a string"):
            if not _valid_hostname(t["hostname"]):
                self.problem("server.hostname", f"{t['hostname']!r} is not a valid host name")
            out["hostname"] = t["hostname"]
        if "data_dir" in t and self.typed("server.data_dir", t["data_dir"], str, "a path"):
            if not t["data_dir"]:
                self.problem("server.data_dir", "must not be empty")
            out["data_dir"] = self.base / t["data_dir"]
        else:
            out["data_dir"] = self.base / d.data_dir
        if "domains" in t and self.typed("server.domains", t["domains"], list, "a list"):
            doms = []
            for i, dom in enumerate(t["domains"]):
                if not isinstance(dom, str) or not _valid_hostname(dom):
                    self.problem(f"server.domains[{i}]", f"{dom!r} is not a valid domain")
                else:
                    doms.append(dom.lower())
            out["domains"] = tuple(doms)
        if "shutdown_timeout" in t:
            v = t["shutdown_timeout"]
            if self.typed("server.shutdown_timeout", v, (int, float), "a number of seconds"):
                if not 0 <= v <= 3600:
                    self.problem("server.shutdown_timeout", "must be from 0 to 3600 seconds")
                out["shutdown_timeout"] = float(v)
        for key in ("user", "group"):
            if key in t and self.typed(f"server.{key}", t[key], str, "a name or a number"):
                if t[key] != t[key].strip() or any(not c.isprintable() for c in t[key]):
                    self.problem(f"server.{key}", f"{t[key]!r} is not a valid {key} name")
                out[key] = t[key]
        if out.get("group") and not out.get("user"):
            self.problem("server.group", "needs server.user")
        return ServerConfig(**out)

    def listen(self, t: Mapping[str, Any]) -> ListenConfig:
        self.unknown("listen", t, ListenConfig)
        # A service left out keeps its local default; [] disables it.
        defaults = local_default().listen
        out = {service: defaults.addresses(service) for service in SERVICES}
        for service in SERVICES:
            if service not in t:
                continue
            key = f"listen.{service}"
            value = t[service]
            if not self.typed(key, value, list, 'a list of "address:port" strings'):
                continue
            addrs = []
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    self.problem(f"{key}[{i}]", f'must be an "address:port" string, not {item!r}')
                    continue
                try:
                    addrs.append(parse_listen(item))
                except ValueError as e:
                    self.problem(f"{key}[{i}]", str(e))
            out[service] = tuple(addrs)
        return ListenConfig(**out)

    def check_duplicates(self, listen: ListenConfig) -> None:
        seen: dict[tuple[str, int], str] = {}
        for service in SERVICES:
            for addr in listen.addresses(service):
                if addr.port == 0:
                    continue
                where = seen.setdefault((addr.host, addr.port), service)
                if where != service or listen.addresses(service).count(addr) > 1:
                    self.problem(f"listen.{service}", f"{addr} is also used by listen.{where}")

    def tls(self, t: Mapping[str, Any]) -> TLSConfig:
        self.unknown("tls", t, TLSConfig)
        paths: dict[str, Path | None] = {}
        for key in ("cert", "key"):
            value = t.get(key, "")
            if self.typed(f"tls.{key}", value, str, "a path to a PEM file"):
                paths[key] = self.base / value if value else None
                if value and not (self.base / value).is_file():
                    self.problem(f"tls.{key}", f"{self.base / value}: no such file")
        if (paths.get("cert") is None) != (paths.get("key") is None):
            self.problem("tls", "set both cert and key, or neither (self-signed)")
        return TLSConfig(cert=paths.get("cert"), key=paths.get("key"))

    def auth(self, t: Mapping[str, Any]) -> AuthConfig:
        self.unknown("auth", t, AuthConfig)
        out: dict[str, Any] = {}
        if "plaintext_on_loopback" in t:
            v = t["plaintext_on_loopback"]
            if self.typed("auth.plaintext_on_loopback", v, bool, "true or false"):
                out["plaintext_on_loopback"] = v
        return AuthConfig(**out)

    def smtp(self, t: Mapping[str, Any]) -> SMTPConfig:
        self.unknown("smtp", t, SMTPConfig)
        out: dict[str, Any] = {}
        if "max_message_size" in t:
            out["max_message_size"] = self.size("smtp.max_message_size", t["max_message_size"])
        counts = ("max_recipients", "max_connections", "max_connections_per_ip", "max_bad_commands")
        for key in counts:
            if key in t and self.typed(f"smtp.{key}", t[key], int, "a whole number"):
                if not 1 <= t[key] <= 1_000_000:
                    self.problem(f"smtp.{key}", "must be from 1 to 1000000")
                out[key] = t[key]
        for key in ("command_timeout", "data_timeout"):
            if key in t and self.typed(f"smtp.{key}", t[key], (int, float), "seconds"):
                if not 0.1 <= t[key] <= 86400:
                    self.problem(f"smtp.{key}", "must be from 0.1 to 86400 seconds")
                out[key] = float(t[key])
        if "auth_on_smtp" in t and self.typed(
            "smtp.auth_on_smtp", t["auth_on_smtp"], bool, "true or false"
        ):
            out["auth_on_smtp"] = t["auth_on_smtp"]
        return SMTPConfig(**out)

    def imap(self, t: Mapping[str, Any]) -> IMAPConfig:
        self.unknown("imap", t, IMAPConfig)
        out: dict[str, Any] = {}
        if "append_limit" in t:
            out["append_limit"] = self.size("imap.append_limit", t["append_limit"])
        for key in ("max_connections", "max_connections_per_ip"):
            if key in t and self.typed(f"imap.{key}", t[key], int, "a whole number"):
                if not 1 <= t[key] <= 1_000_000:
                    self.problem(f"imap.{key}", "must be from 1 to 1000000")
                out[key] = t[key]
        for key in ("autologout", "login_timeout"):
            if key in t and self.typed(f"imap.{key}", t[key], (int, float), "seconds"):
                if not 0.1 <= t[key] <= 86400:
                    self.problem(f"imap.{key}", "must be from 0.1 to 86400 seconds")
                out[key] = float(t[key])
        return IMAPConfig(**out)

    def pop3(self, t: Mapping[str, Any]) -> POP3Config:
        self.unknown("pop3", t, POP3Config)
        out: dict[str, Any] = {}
        for key in ("max_connections", "max_connections_per_ip", "max_bad_commands"):
            if key in t and self.typed(f"pop3.{key}", t[key], int, "a whole number"):
                if not 1 <= t[key] <= 1_000_000:
                    self.problem(f"pop3.{key}", "must be from 1 to 1000000")
                out[key] = t[key]
        if "timeout" in t and self.typed("pop3.timeout", t["timeout"], (int, float), "seconds"):
            if not 0.1 <= t["timeout"] <= 86400:
                self.problem("pop3.timeout", "must be from 0.1 to 86400 seconds")
            out["timeout"] = float(t["timeout"])
        return POP3Config(**out)

    def outbound(self, t: Mapping[str, Any]) -> OutboundConfig:
        self.unknown("outbound", t, OutboundConfig)
        out: dict[str, Any] = {}
        if "nameservers" in t and self.typed(
            "outbound.nameservers", t["nameservers"], list, 'a list of "address:port" strings'
        ):
            servers = []
            for i, item in enumerate(t["nameservers"]):
                try:
                    if not isinstance(item, str):
                        raise ValueError(f"must be a string, not {item!r}")
                    parse_hostport(item, 53, ip_only=True)
                    servers.append(item)
                except ValueError as e:
                    self.problem(f"outbound.nameservers[{i}]", str(e))
            out["nameservers"] = tuple(servers)
        if "mx_port" in t and self.typed("outbound.mx_port", t["mx_port"], int, "a port number"):
            if not 1 <= t["mx_port"] <= 65535:
                self.problem("outbound.mx_port", "must be from 1 to 65535")
            out["mx_port"] = t["mx_port"]
        if (
            "smarthost" in t
            and self.typed("outbound.smarthost", t["smarthost"], str, 'a "host:port" string')
            and t["smarthost"]
        ):
            try:
                out["smarthost"] = parse_hostport(t["smarthost"], 25)
            except ValueError as e:
                self.problem("outbound.smarthost", str(e))
        if "smarthost_ca" in t and self.typed(
            "outbound.smarthost_ca", t["smarthost_ca"], str, "a path"
        ):
            out["smarthost_ca"] = self.base / t["smarthost_ca"]
        for key in ("smarthost_user", "smarthost_password"):
            if key in t and self.typed(f"outbound.{key}", t[key], str, "a string"):
                out[key] = t[key]
        if "smarthost_tls" in t and self.typed(
            "outbound.smarthost_tls", t["smarthost_tls"], str, "a string"
        ):
            if t["smarthost_tls"] not in ("required", "opportunistic", "implicit"):
                self.problem(
                    "outbound.smarthost_tls", 'must be "required", "opportunistic" or "implicit"'
                )
            out["smarthost_tls"] = t["smarthost_tls"]
        if "routes" in t and self.typed("outbound.routes", t["routes"], dict, "a table"):
            routes = []
            for domain, hop in t["routes"].items():
                key = f"outbound.routes.{domain}"
                if not _valid_hostname(domain):
                    self.problem(key, f"{domain!r} is not a valid domain")
                elif not isinstance(hop, str):
                    self.problem(key, f'must be a "host:port" string, not {hop!r}')
                else:
                    try:
                        routes.append((domain.lower(), parse_hostport(hop, 25)))
                    except ValueError as e:
                        self.problem(key, str(e))
            out["routes"] = tuple(routes)
        for key in ("lifetime", "delay_warning", "retry_first", "retry_max"):
            if key in t:
                out[key] = self.duration(f"outbound.{key}", t[key])
        for key in ("max_connections", "max_per_destination"):
            if key in t and self.typed(f"outbound.{key}", t[key], int, "a whole number"):
                if not 1 <= t[key] <= 100_000:
                    self.problem(f"outbound.{key}", "must be from 1 to 100000")
                out[key] = t[key]
        for key in ("connect_timeout", "command_timeout"):
            if key in t and self.typed(f"outbound.{key}", t[key], (int, float), "seconds"):
                if not 0.1 <= t[key] <= 3600:
                    self.problem(f"outbound.{key}", "must be from 0.1 to 3600 seconds")
                out[key] = float(t[key])
        if out.get("smarthost_password") and not out.get("smarthost_user"):
            self.problem("outbound.smarthost_password", "needs outbound.smarthost_user")
        return OutboundConfig(**out)

    def web(self, t: Mapping[str, Any]) -> WebConfig:
        self.unknown("web", t, WebConfig)
        out: dict[str, Any] = {}
        if "tls" in t and self.typed("web.tls", t["tls"], bool, "true or false"):
            out["tls"] = t["tls"]
        return WebConfig(**out)

    def duration(self, key: str, value: object) -> float:
        """Seconds: a number, or a string such as "90s", "5m", "4h", "5d"."""
        try:
            return parse_duration(value)
        except ValueError as e:
            self.problem(key, str(e))
            return 1.0

    def size(self, key: str, value: object) -> int:
        """A byte count: a whole number or a string such as "50M" (binary units)."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str):
            try:
                size = parse_size(value)
            except BadSize:
                size = None
            if size:
                return size
        self.problem(key, f'must be a size such as 52428800 or "50M", not {value!r}')
        return 1


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> float:
    """``300``, ``"90s"``, ``"5m"``, ``"4h"``, ``"5d"``, ``"1w"`` -> seconds (> 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1])
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            raise ValueError(
                f'must be a duration such as 300, "90s", "5m", "4h" or "5d", not {value!r}'
            ) from None
    else:
        raise ValueError(
            f'must be a duration such as 300, "90s", "5m", "4h" or "5d", not {value!r}'
        )
    if not 0 < seconds <= 366 * 86400:
        raise ValueError(f"{value!r} is out of range (more than 0, at most a year)")
    return seconds


def parse_hostport(text: str, default_port: int, *, ip_only: bool = False) -> HostPort:
    """``host:port``, ``host`` (default port), ``[v6]:port`` or a bare IPv6 address."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        port = int(p)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port out of range")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ip_only or not _valid_hostname(host):
            what = "an IP address" if ip_only else "a host name or IP address"
            raise ValueError(f"{text!r}: {host!r} is not {what}") from None
    return HostPort(host, port)


def _valid_hostname(name: str) -> bool:
    """RFC 1123 §2.1 host name (ASCII; IDNs in A-label form)."""
    if not name or len(name) > 253:
        return False
    labels = name.rstrip(".").split(".")
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    )
