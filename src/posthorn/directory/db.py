"""`DirectoryDB`: domains, accounts and aliases in SQLite — the synchronous core.

One object holds one ``sqlite3`` connection to ``data_dir/directory.sqlite3`` and must be used
from one thread at a time (the thread that made it). The ``posthorn`` CLI opens it directly
(`DirectoryDB(path)`); the server (another process) runs it through
`posthorn.directory.service.Directory`, whose `SQLiteThread` owns the connection and hands it to
`DirectoryDB.attach` inside each job. WAL mode lets both sides read at once; every write is one
short ``BEGIN IMMEDIATE`` transaction (a savepoint when attached) that waits up to
``busy_timeout`` (5 s) for the other side's write lock.

Invariants:

- Every check and the write it guards run in one transaction: a `DirectoryError` means the
  database is unchanged. Argon2 hashing (≈50 ms) happens before the transaction, never inside.
- Keys are normalised (see `posthorn.directory.schema`): callers may pass any spelling —
  ``Bob@Bücher.Example`` finds ``bob@xn--bcher-kva.example``.
- An address is an account or an alias source, never both: an alias would silently hide the
  mailbox (Postfix lets it), so posthorn refuses and says which one exists. Forwarding with a
  kept copy is a delivery rule (Sieve), not an alias.
- An alias never points straight at itself. Targets may be remote, or local addresses that do
  not exist yet (as in Postfix); `resolve` reports those as unknown, and loops through several
  aliases as `ResolveStatus.LOOP`.
- Accounts and alias sources have plain local parts: no ``%``, ``!`` or ``@`` (the routing
  characters), no address literals.
- Disabling an account blocks logins only; mail is still delivered to it.
- The admin flag only grants the web admin pages; it changes nothing about mail.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from posthorn.directory import validate
from posthorn.directory.errors import (
    AddressInUse,
    AliasLoop,
    BadAddress,
    DomainInUse,
    DuplicateAccount,
    DuplicateDomain,
    EmptyPassword,
    NoSuchAccount,
    NoSuchAlias,
    UnknownDomain,
)
from posthorn.directory.passwords import Hasher
from posthorn.directory.records import Account, Alias, Domain
from posthorn.directory.resolve import Resolution, resolve
from posthorn.directory.schema import migrate
from posthorn.mail.address import Address, AddressError, domain_to_unicode, parse_address

__all__ = ["BUSY_TIMEOUT", "DIRECTORY_FILENAME", "Account", "Alias", "DirectoryDB", "Domain"]

DIRECTORY_FILENAME: Final = "directory.sqlite3"
BUSY_TIMEOUT: Final = 5.0
_ACCOUNT_COLUMNS: Final = "address, password_hash, quota_bytes, enabled, created, admin"


class DirectoryDB:
    """The directory on one SQLite connection. Not thread-safe; see the module docstring.

    ``hasher`` hashes passwords handed in as plaintext (default: production parameters).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        hasher: Hasher | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.hasher: Hasher | None = hasher if hasher is not None else Hasher()
        conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent; readers never block writers
            conn.execute("PRAGMA synchronous = FULL")  # a returned COMMIT is on disk
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._owns_conn = True

    @classmethod
    def attach(cls, conn: sqlite3.Connection) -> DirectoryDB:
        """Wrap a connection someone else owns (the server's `SQLiteThread`).

        Nothing is configured, migrated or closed: the owner did that (see
        `posthorn.directory.schema.migrate`). Operations nest in the owner's transaction as
        savepoints. No hasher: plaintext passwords are refused, because hashing on the
        database thread would stall every other directory job for ≈50 ms.
        """
        db = cls.__new__(cls)
        db.path = Path()
        db.hasher = None
        db._conn = conn
        db._owns_conn = False
        return db

    @classmethod
    def reader(cls, path: str | Path, *, busy_timeout: float = 1.0) -> DirectoryDB:
        """A read-only connection for look-ups run inline on the event loop.

        In WAL mode a reader never waits for writers, and the look-ups behind RCPT TO and
        logins are a few indexed point queries (tens of microseconds), far cheaper than a hop
        to the database thread and back. The schema must exist already (migrated by the owner).
        """
        conn = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
        )
        db = cls.attach(conn)
        db.path = Path(path)
        db._owns_conn = True
        return db

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, *, hasher: Hasher | None = None) -> DirectoryDB:
        """Open (creating if needed) ``data_dir/directory.sqlite3``."""
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / DIRECTORY_FILENAME, hasher=hasher)

    def data_version(self) -> int:
        """Changes whenever another connection commits to this database (SQLite pragma)."""
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def close(self) -> None:
        if self._owns_conn:
            self._conn.close()

    def __enter__(self) -> DirectoryDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- domains --------------------------------------------------------------------------

    def add_domain(self, name: str) -> Domain:
        domain = validate.domain_name(name)
        with self._write():
            if self.is_local_domain(domain):
                raise DuplicateDomain(f"domain {_show(domain)} already exists")
            now = int(time.time())
            self._conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (domain, now))
        return Domain(domain, _datetime(now))

    def get_domain(self, name: str) -> Domain:
        """The domain in any spelling; `UnknownDomain` if it is not ours."""
        domain = validate.domain_name(name)
        row = self._conn.execute(
            "SELECT name, created FROM domains WHERE name = ?", (domain,)
        ).fetchone()
        if row is None:
            raise _unknown_domain(domain)
        return Domain(row[0], _datetime(row[1]))

    def list_domains(self) -> list[Domain]:
        rows = self._conn.execute("SELECT name, created FROM domains ORDER BY name").fetchall()
        return [Domain(name, _datetime(created)) for name, created in rows]

    def delete_domain(self, name: str) -> None:
        """Delete an empty domain; `DomainInUse` says how many accounts/aliases remain."""
        domain = validate.domain_name(name)
        with self._write():
            self._require_domain(domain)
            accounts, aliases = self.domain_usage(domain)
            if accounts or aliases:
                raise DomainInUse(
                    f"domain {_show(domain)} still has {_plural(accounts, 'account')} and "
                    f"{_plural(aliases, 'alias', 'aliases')}; delete them first"
                )
            self._conn.execute("DELETE FROM domains WHERE name = ?", (domain,))

    def domain_usage(self, domain: str) -> tuple[int, int]:
        """(accounts, alias sources) in the normalised ``domain``."""
        (accounts,) = self._conn.execute(
            "SELECT count(*) FROM accounts WHERE domain = ?", (domain,)
        ).fetchone()
        (aliases,) = self._conn.execute(
            "SELECT count(DISTINCT source) FROM aliases WHERE domain = ?", (domain,)
        ).fetchone()
        return int(accounts), int(aliases)

    # --- accounts -------------------------------------------------------------------------

    def add_account(
        self,
        address: str,
        password: str | None = None,
        *,
        password_hash: str | None = None,
        quota_bytes: int | None = None,
        enabled: bool = True,
        admin: bool = False,
    ) -> Account:
        """Create an account from a plaintext ``password`` or a ready ``password_hash``;
        ``admin`` lets it use the web admin pages."""
        key, domain = validate.mailbox_key(address, "account")
        validate.check_quota(quota_bytes)
        new_hash = self._new_hash(password, password_hash)
        with self._write():
            self._require_domain(domain)
            if self.is_account(key):
                raise DuplicateAccount(f"account {key} already exists")
            if self._alias_exists(key):
                raise AddressInUse(f"{key} is an alias; delete the alias first")
            now = int(time.time())
            self._conn.execute(
                f"INSERT INTO accounts (domain, {_ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (domain, key, new_hash, quota_bytes, int(enabled), now, int(admin)),
            )
        return Account(key, new_hash, quota_bytes, enabled, _datetime(now), admin)

    def get_account(self, address: str) -> Account:
        key, _ = validate.mailbox_key(address, "account")
        account = self._select_account(key)
        if account is None:
            raise NoSuchAccount(f"no account {key}")
        return account

    def find_account(self, address: str) -> Account | None:
        """Like `get_account`, but None for an unknown or malformed address (for logins)."""
        try:
            key = parse_address(address).canonical
        except AddressError:
            return None
        return self._select_account(key)

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            rows = self._conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address"
            ).fetchall()
        else:
            name = validate.domain_name(domain)
            self._require_domain(name)
            rows = self._conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE domain = ? ORDER BY address",
                (name,),
            ).fetchall()
        return [_account(row) for row in rows]

    def delete_account(self, address: str) -> None:
        """Delete the account row (its mail in the store is the caller's business)."""
        key, _ = validate.mailbox_key(address, "account")
        with self._write():
            cursor = self._conn.execute("DELETE FROM accounts WHERE address = ?", (key,))
            if cursor.rowcount == 0:
                raise NoSuchAccount(f"no account {key}")

    def set_password(
        self, address: str, password: str | None = None, *, password_hash: str | None = None
    ) -> None:
        key, _ = validate.mailbox_key(address, "account")
        if self._select_account(key) is None:  # fail before spending 50 ms on a hash
            raise NoSuchAccount(f"no account {key}")
        new_hash = self._new_hash(password, password_hash)
        self._update_account(key, "password_hash = ?", new_hash)

    def replace_password_hash(self, address: str, old_hash: str, new_hash: str) -> bool:
        """Compare-and-set for rehash-on-login: False (no change) if the hash moved meanwhile."""
        key, _ = validate.mailbox_key(address, "account")
        validate.check_hash(new_hash)
        with self._write():
            cursor = self._conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ? AND password_hash = ?",
                (new_hash, key, old_hash),
            )
            return cursor.rowcount == 1

    def set_enabled(self, address: str, enabled: bool) -> None:
        key, _ = validate.mailbox_key(address, "account")
        self._update_account(key, "enabled = ?", int(enabled))

    def set_admin(self, address: str, admin: bool) -> None:
        """Grant or take away the web admin pages; open web sessions feel it at their next
        request (`posthorn.web.auth.require_admin` asks the directory every time)."""
        key, _ = validate.mailbox_key(address, "account")
        self._update_account(key, "admin = ?", int(admin))

    def set_quota(self, address: str, quota_bytes: int | None) -> None:
        """Set the storage quota in bytes; None is unlimited."""
        key, _ = validate.mailbox_key(address, "account")
        validate.check_quota(quota_bytes)
        self._update_account(key, "quota_bytes = ?", quota_bytes)

    # --- aliases --------------------------------------------------------------------------

    def add_alias(self, source: str, targets: Iterable[str]) -> Alias:
        """Add targets to ``source`` (an address or ``@domain``); returns all its targets.

        Idempotent: a target the alias already has is left as is.
        """
        key, domain = validate.alias_source(source)
        parsed = [validate.alias_target(text) for text in targets]
        if not parsed:
            raise BadAddress(f"alias {key} needs at least one target")
        for target in parsed:
            if target.canonical == key:
                raise AliasLoop(f"alias {key} cannot point to itself")
        with self._write():
            self._require_domain(domain)
            if self.is_account(key):
                raise AddressInUse(f"{key} is an account; an alias would hide its mailbox")
            now = int(time.time())
            self._conn.executemany(
                "INSERT OR IGNORE INTO aliases (source, target, domain, created)"
                " VALUES (?, ?, ?, ?)",
                [(key, self._stored_target(t), domain, now) for t in parsed],
            )
            return Alias(key, tuple(self.alias_targets(key)))

    def get_alias(self, source: str) -> Alias:
        key, _ = validate.alias_source(source)
        targets = self.alias_targets(key)
        if not targets:
            raise NoSuchAlias(f"no alias {key}")
        return Alias(key, tuple(targets))

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            rows = self._conn.execute(
                "SELECT source, target FROM aliases ORDER BY source, rowid"
            ).fetchall()
        else:
            name = validate.domain_name(domain)
            self._require_domain(name)
            rows = self._conn.execute(
                "SELECT source, target FROM aliases WHERE domain = ? ORDER BY source, rowid",
                (name,),
            ).fetchall()
        grouped: dict[str, list[str]] = {}
        for source, target in rows:
            grouped.setdefault(source, []).append(target)
        return [Alias(source, tuple(targets)) for source, targets in grouped.items()]

    def delete_alias(self, source: str, targets: Iterable[str] | None = None) -> int:
        """Remove the given targets of ``source`` (all of them if None); returns rows removed.

        A target the alias does not have is `NoSuchAlias`, and then nothing is removed.
        """
        key, _ = validate.alias_source(source)
        with self._write():
            if targets is None:
                cursor = self._conn.execute("DELETE FROM aliases WHERE source = ?", (key,))
                if cursor.rowcount == 0:
                    raise NoSuchAlias(f"no alias {key}")
                return cursor.rowcount
            removed = 0
            for target in [validate.alias_target(text) for text in targets]:
                stored = self._stored_target(target)
                cursor = self._conn.execute(
                    "DELETE FROM aliases WHERE source = ? AND target = ?", (key, stored)
                )
                if cursor.rowcount == 0:
                    raise NoSuchAlias(f"alias {key} has no target {stored}")
                removed += cursor.rowcount
            return removed

    # --- resolution (the `Lookup` protocol of posthorn.directory.resolve) ---------------------

    def resolve(self, address: str | Address) -> Resolution:
        """Resolve a recipient in one consistent snapshot (see `posthorn.directory.resolve`)."""
        if isinstance(address, str):
            address = validate.parse(address)
        with self._read():
            return resolve(address, self)

    def is_local_domain(self, domain: str) -> bool:
        """``domain`` (already normalised) is one of ours."""
        row = self._conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone()
        return row is not None

    def is_account(self, address: str) -> bool:
        """An account has this canonical address."""
        row = self._conn.execute("SELECT 1 FROM accounts WHERE address = ?", (address,)).fetchone()
        return row is not None

    def alias_targets(self, source: str) -> Sequence[str]:
        """Targets of the alias ``source`` (canonical or ``@domain``), in insertion order."""
        rows = self._conn.execute(
            "SELECT target FROM aliases WHERE source = ? ORDER BY rowid", (source,)
        ).fetchall()
        return [target for (target,) in rows]

    # --- internals ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One all-or-nothing write: its own transaction, or a savepoint in the owner's."""
        conn = self._conn
        if conn.in_transaction:  # attached: the runner's transaction is already open
            conn.execute("SAVEPOINT directory")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK TO directory")
                conn.execute("RELEASE directory")
                raise
            conn.execute("RELEASE directory")
            return
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so the
        # checks that follow see the state the write will change.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if _in_transaction(conn):  # SQLite may have rolled back already (I/O error)
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[None]:
        """Several reads from one snapshot."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            if _in_transaction(self._conn):
                self._conn.execute("COMMIT")

    def _new_hash(self, password: str | None, password_hash: str | None) -> str:
        if (password is None) == (password_hash is None):
            raise TypeError("give exactly one of password and password_hash")
        if password is not None:
            if not password:
                raise EmptyPassword("the password must not be empty")
            if self.hasher is None:
                raise TypeError("no hasher here (attached): pass password_hash, hashed elsewhere")
            return self.hasher.hash(password)
        assert password_hash is not None
        validate.check_hash(password_hash)
        return password_hash

    def _require_domain(self, domain: str) -> None:
        if not self.is_local_domain(domain):
            raise _unknown_domain(domain)

    def _alias_exists(self, source: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM aliases WHERE source = ?", (source,)).fetchone()
        return row is not None

    def _select_account(self, key: str) -> Account | None:
        row = self._conn.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (key,)
        ).fetchone()
        return None if row is None else _account(row)

    def _update_account(self, key: str, assignment: str, value: object) -> None:
        with self._write():
            cursor = self._conn.execute(
                f"UPDATE accounts SET {assignment} WHERE address = ?", (value, key)
            )
            if cursor.rowcount == 0:
                raise NoSuchAccount(f"no account {key}")

    def _stored_target(self, target: Address) -> str:
        # Targets in our domains are stored by their key, so "Bob@ours" and "bob@ours" are one
        # target; remote ones keep their case (RFC 5321 §2.4).
        return target.canonical if self.is_local_domain(target.domain) else str(target)


def _in_transaction(conn: sqlite3.Connection) -> bool:
    # A function, so that mypy does not carry an earlier narrowing of the property across
    # statements that change it.
    return conn.in_transaction


def _account(row: Any) -> Account:
    address, password_hash, quota_bytes, enabled, created, admin = row
    return Account(
        address, password_hash, quota_bytes, bool(enabled), _datetime(created), bool(admin)
    )


def _datetime(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _unknown_domain(domain: str) -> UnknownDomain:
    return UnknownDomain(f"domain {_show(domain)} does not exist; add it first")


def _show(domain: str) -> str:
    unicode = domain_to_unicode(domain)
    return domain if unicode == domain else f"{unicode} ({domain})"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"
