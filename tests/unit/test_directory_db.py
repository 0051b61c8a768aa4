"""The synchronous directory core (posthorn.directory.db) on a real SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posthorn.directory.db import DIRECTORY_FILENAME, Alias, DirectoryDB
from posthorn.directory.errors import (
    AddressInUse,
    AliasLoop,
    BadAddress,
    BadPasswordHash,
    BadSize,
    DirectoryError,
    DomainInUse,
    DuplicateAccount,
    DuplicateDomain,
    EmptyPassword,
    NoSuchAccount,
    NoSuchAlias,
    SchemaTooNew,
    UnknownDomain,
)
from posthorn.directory.passwords import Hasher, HashParams
from posthorn.directory.resolve import LocalTarget, ResolveStatus
from posthorn.directory.schema import MIGRATIONS, SCHEMA_VERSION
from posthorn.store.sqlite.db import apply_migrations

CHEAP = Hasher(HashParams(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / DIRECTORY_FILENAME


@pytest.fixture
def db(path: Path) -> Iterator[DirectoryDB]:
    with DirectoryDB(path, hasher=CHEAP) as directory:
        yield directory


@pytest.fixture
def populated(db: DirectoryDB) -> DirectoryDB:
    db.add_domain("ours.example")
    db.add_domain("Bücher.example")
    db.add_account("bob@ours.example", "bob-pw")
    db.add_account("alice@ours.example", "alice-pw", quota_bytes=1024)
    db.add_alias("team@ours.example", ["bob@ours.example", "alice@ours.example"])
    db.add_alias("@xn--bcher-kva.example", ["bob@ours.example"])
    return db


def snapshot(path: Path) -> list[tuple[object, ...]]:
    """Every row of every table, read through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        rows: list[tuple[object, ...]] = []
        for table in ("domains", "accounts", "aliases"):
            rows += [(table, *row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
        return rows
    finally:
        conn.close()


# --- opening and migrations -------------------------------------------------------------------


def test_new_file_is_wal_and_migrated(db: DirectoryDB, path: Path) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


def test_version_1_file_gains_the_admin_flag(path: Path) -> None:
    """A directory from before the admin flag keeps its accounts, all of them plain users."""
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, MIGRATIONS[:1])
    conn.execute("INSERT INTO domains VALUES ('ours.example', 0)")
    conn.execute(
        "INSERT INTO accounts VALUES ('bob@ours.example', 'ours.example', ?, NULL, 1, 0)",
        (CHEAP.hash("pw"),),
    )
    conn.close()
    with DirectoryDB(path, hasher=CHEAP) as db:
        bob = db.get_account("bob@ours.example")
        assert not bob.admin and bob.enabled
        db.set_admin("bob@ours.example", True)
        assert db.get_account("bob@ours.example").admin
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with pytest.raises(sqlite3.IntegrityError):  # the CHECK keeps the flag 0 or 1
        conn.execute("UPDATE accounts SET admin = 2")
    conn.close()


def test_reopen_keeps_data_and_version(populated: DirectoryDB, path: Path) -> None:
    before = snapshot(path)
    populated.close()
    with DirectoryDB(path, hasher=CHEAP) as again:
        assert snapshot(path) == before
        assert again.get_account("bob@ours.example").address == "bob@ours.example"
    with DirectoryDB.in_data_dir(path.parent, hasher=CHEAP) as third:
        assert [d.name for d in third.list_domains()] == ["ours.example", "xn--bcher-kva.example"]


def test_in_data_dir_creates_the_directory(tmp_path: Path) -> None:
    with DirectoryDB.in_data_dir(tmp_path / "new" / "data", hasher=CHEAP) as db:
        assert db.path == tmp_path / "new" / "data" / "directory.sqlite3"
        assert db.path.exists()


def test_newer_schema_is_refused(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade posthorn"):
        DirectoryDB(path, hasher=CHEAP)


# --- domains ----------------------------------------------------------------------------------


def test_domains(db: DirectoryDB) -> None:
    added = db.add_domain("BÜCHER.example")
    assert added.name == "xn--bcher-kva.example"
    assert added.unicode == "bücher.example"
    db.add_domain("ours.example")
    assert [d.name for d in db.list_domains()] == ["ours.example", "xn--bcher-kva.example"]
    assert db.is_local_domain("ours.example")
    with pytest.raises(DuplicateDomain, match=r"bücher.example \(xn--bcher-kva.example\) already"):
        db.add_domain("xn--bcher-kva.example")
    db.delete_domain("Bücher.Example")
    assert [d.name for d in db.list_domains()] == ["ours.example"]


@pytest.mark.parametrize("bad", ["", "exa mple.org", "a..b", "[192.0.2.1]", "x.org."])
def test_bad_domain_names(db: DirectoryDB, bad: str) -> None:
    with pytest.raises(BadAddress):
        db.add_domain(bad)


def test_delete_domain_in_use_names_the_counts(populated: DirectoryDB) -> None:
    with pytest.raises(DomainInUse, match="still has 2 accounts and 1 alias; delete them first"):
        populated.delete_domain("ours.example")
    with pytest.raises(DomainInUse, match="0 accounts and 1 alias"):
        populated.delete_domain("bücher.example")
    with pytest.raises(UnknownDomain):
        populated.delete_domain("nope.example")


def test_get_domain(populated: DirectoryDB) -> None:
    assert populated.get_domain("BÜCHER.example").name == "xn--bcher-kva.example"
    with pytest.raises(UnknownDomain, match=r"domain nope\.example does not exist; add it first"):
        populated.get_domain("nope.example")
    with pytest.raises(BadAddress):
        populated.get_domain("bad_domain!")


# --- accounts ---------------------------------------------------------------------------------


def test_add_and_get_account(populated: DirectoryDB) -> None:
    bob = populated.get_account("BOB@Ours.Example")
    assert bob.address == "bob@ours.example"
    assert bob.domain == "ours.example"
    assert bob.enabled and bob.quota_bytes is None
    assert CHEAP.verify(bob.password_hash, "bob-pw")
    assert "password_hash" not in repr(bob)  # hashes stay out of logs
    assert populated.get_account("alice@ours.example").quota_bytes == 1024
    assert populated.find_account("nobody@ours.example") is None
    assert populated.find_account("not an address") is None
    with pytest.raises(NoSuchAccount):
        populated.get_account("nobody@ours.example")


def test_add_account_with_ready_hash_and_idn(db: DirectoryDB) -> None:
    db.add_domain("bücher.example")
    hashed = CHEAP.hash("pw")
    account = db.add_account("Jürgen@BÜCHER.example", password_hash=hashed, enabled=False)
    assert account.address == "jürgen@xn--bcher-kva.example"
    assert not db.get_account("jürgen@bücher.example").enabled


def test_list_accounts(populated: DirectoryDB) -> None:
    populated.add_account("x@bücher.example", "pw")
    assert [a.address for a in populated.list_accounts()] == [
        "alice@ours.example",
        "bob@ours.example",
        "x@xn--bcher-kva.example",
    ]
    assert [a.address for a in populated.list_accounts("Bücher.example")] == [
        "x@xn--bcher-kva.example"
    ]
    with pytest.raises(UnknownDomain):
        populated.list_accounts("nope.example")


def test_account_updates(populated: DirectoryDB) -> None:
    old_hash = populated.get_account("bob@ours.example").password_hash
    populated.set_password("bob@ours.example", "new-pw")
    new_hash = populated.get_account("bob@ours.example").password_hash
    assert new_hash != old_hash and CHEAP.verify(new_hash, "new-pw")
    populated.set_enabled("bob@ours.example", False)
    assert not populated.get_account("bob@ours.example").enabled
    populated.set_quota("bob@ours.example", 500 * 1024**2)
    assert populated.get_account("bob@ours.example").quota_bytes == 500 * 1024**2
    populated.set_quota("bob@ours.example", None)
    assert populated.get_account("bob@ours.example").quota_bytes is None
    populated.delete_account("bob@ours.example")
    assert populated.find_account("bob@ours.example") is None


def test_admin_flag(populated: DirectoryDB) -> None:
    assert not populated.get_account("bob@ours.example").admin  # the default
    root = populated.add_account("root@ours.example", "root-pw", admin=True)
    assert root.admin and populated.get_account("ROOT@ours.example").admin
    assert [a.address for a in populated.list_accounts() if a.admin] == ["root@ours.example"]
    populated.set_admin("Bob@Ours.Example", True)
    assert populated.get_account("bob@ours.example").admin
    populated.set_admin("bob@ours.example", False)
    assert not populated.get_account("bob@ours.example").admin
    with pytest.raises(NoSuchAccount, match=r"no account nobody@ours\.example"):
        populated.set_admin("nobody@ours.example", True)


def test_replace_password_hash_is_compare_and_set(populated: DirectoryDB) -> None:
    current = populated.get_account("bob@ours.example").password_hash
    newer = CHEAP.hash("bob-pw")
    assert not populated.replace_password_hash("bob@ours.example", "$argon2id$stale", newer)
    assert populated.get_account("bob@ours.example").password_hash == current
    assert populated.replace_password_hash("bob@ours.example", current, newer)
    assert populated.get_account("bob@ours.example").password_hash == newer


def test_password_arguments_are_exactly_one(db: DirectoryDB) -> None:
    db.add_domain("ours.example")
    with pytest.raises(TypeError):
        db.add_account("a@ours.example")
    with pytest.raises(TypeError):
        db.add_account("a@ours.example", "pw", password_hash=CHEAP.hash("pw"))


# --- aliases ----------------------------------------------------------------------------------


def test_aliases(populated: DirectoryDB) -> None:
    alias = populated.add_alias("Team@ours.example", ["carol@far.example", "bob@ours.example"])
    assert alias == Alias(
        "team@ours.example", ("bob@ours.example", "alice@ours.example", "carol@far.example")
    )
    assert populated.add_alias("team@ours.example", ["BOB@ours.example"]) == alias  # idempotent
    remote = populated.add_alias("fwd@ours.example", ["Carol@Far.Example"])
    assert remote.targets == ("Carol@far.example",)  # remote local-part case kept
    assert populated.get_alias("@bücher.example").is_catch_all
    assert [a.source for a in populated.list_aliases()] == [
        "@xn--bcher-kva.example",
        "fwd@ours.example",
        "team@ours.example",
    ]
    assert [a.source for a in populated.list_aliases("ours.example")] == [
        "fwd@ours.example",
        "team@ours.example",
    ]
    assert populated.delete_alias("team@ours.example", ["carol@far.example"]) == 1
    assert populated.get_alias("team@ours.example").targets == (
        "bob@ours.example",
        "alice@ours.example",
    )
    assert populated.delete_alias("team@ours.example") == 2
    with pytest.raises(NoSuchAlias):
        populated.get_alias("team@ours.example")


def test_resolve_through_the_database(populated: DirectoryDB) -> None:
    populated.add_alias("all@ours.example", ["team@ours.example", "x@far.example"])
    result = populated.resolve("all@ours.example")
    assert result.status is ResolveStatus.OK
    assert result.local == (LocalTarget("bob@ours.example"), LocalTarget("alice@ours.example"))
    assert result.remote == ("x@far.example",)
    assert populated.resolve("bob+tag@ours.example").local == (
        LocalTarget("bob@ours.example", "tag"),
    )
    assert populated.resolve("anyone@bücher.example").local == (LocalTarget("bob@ours.example"),)
    assert populated.resolve("x@far.example").status is ResolveStatus.FOREIGN
    assert populated.resolve("nobody@ours.example").status is ResolveStatus.UNKNOWN
    populated.add_alias("loop1@ours.example", ["loop2@ours.example"])
    populated.add_alias("loop2@ours.example", ["loop1@ours.example"])
    assert populated.resolve("loop1@ours.example").status is ResolveStatus.LOOP
    with pytest.raises(BadAddress):
        populated.resolve("not an address")


# --- every error leaves the database as it was --------------------------------------------------

ERRORS: list[tuple[str, Callable[[DirectoryDB], object], type[DirectoryError], str]] = [
    ("dup domain", lambda d: d.add_domain("OURS.example"), DuplicateDomain, "already exists"),
    ("bad account", lambda d: d.add_account("bob", "pw"), BadAddress, "no '@'"),
    (
        "unknown domain",
        lambda d: d.add_account("x@nope.example", "pw"),
        UnknownDomain,
        "add it first",
    ),
    (
        "dup account",
        lambda d: d.add_account("Bob@ours.example", "pw"),
        DuplicateAccount,
        "already exists",
    ),
    ("empty password", lambda d: d.add_account("new@ours.example", ""), EmptyPassword, "empty"),
    (
        "bad hash",
        lambda d: d.add_account("n@ours.example", password_hash="x"),
        BadPasswordHash,
        "argon2",
    ),
    (
        "account is alias",
        lambda d: d.add_account("team@ours.example", "pw"),
        AddressInUse,
        "is an alias",
    ),
    ("routing chars", lambda d: d.add_account("a%b@ours.example", "pw"), BadAddress, "'%'"),
    ("literal", lambda d: d.add_account("a@[192.0.2.1]", "pw"), BadAddress, "address literal"),
    (
        "negative quota",
        lambda d: d.add_account("n@ours.example", "pw", quota_bytes=-1),
        BadSize,
        "negative",
    ),
    (
        "no account pw",
        lambda d: d.set_password("nobody@ours.example", "pw"),
        NoSuchAccount,
        "nobody",
    ),
    ("empty new pw", lambda d: d.set_password("bob@ours.example", ""), EmptyPassword, "empty"),
    (
        "no account en",
        lambda d: d.set_enabled("nobody@ours.example", False),
        NoSuchAccount,
        "no account",
    ),
    ("no account q", lambda d: d.set_quota("nobody@ours.example", 1), NoSuchAccount, "no account"),
    ("bad quota", lambda d: d.set_quota("bob@ours.example", -5), BadSize, "negative"),
    (
        "no account del",
        lambda d: d.delete_account("nobody@ours.example"),
        NoSuchAccount,
        "no account",
    ),
    (
        "alias is account",
        lambda d: d.add_alias("bob@ours.example", ["x@far.example"]),
        AddressInUse,
        "account",
    ),
    (
        "self alias",
        lambda d: d.add_alias("me@ours.example", ["x@far.example", "ME@ours.example"]),
        AliasLoop,
        "itself",
    ),
    ("no targets", lambda d: d.add_alias("new@ours.example", []), BadAddress, "at least one"),
    (
        "bad target",
        lambda d: d.add_alias("new@ours.example", ["x@far.example", "nope"]),
        BadAddress,
        "nope",
    ),
    (
        "domain target",
        lambda d: d.add_alias("new@ours.example", ["@far.example"]),
        BadAddress,
        "full address",
    ),
    (
        "alias domain",
        lambda d: d.add_alias("x@nope.example", ["bob@ours.example"]),
        UnknownDomain,
        "nope",
    ),
    (
        "catch-all domain",
        lambda d: d.add_alias("@nope.example", ["bob@ours.example"]),
        UnknownDomain,
        "nope",
    ),
    ("no alias", lambda d: d.delete_alias("none@ours.example"), NoSuchAlias, "no alias"),
    (
        "partial delete",
        lambda d: d.delete_alias("team@ours.example", ["bob@ours.example", "zed@ours.example"]),
        NoSuchAlias,
        "has no target zed@ours.example",
    ),
    ("domain in use", lambda d: d.delete_domain("ours.example"), DomainInUse, "2 accounts"),
]


@pytest.mark.parametrize(("name", "call", "error", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_change_nothing(
    populated: DirectoryDB,
    path: Path,
    name: str,
    call: Callable[[DirectoryDB], object],
    error: type[DirectoryError],
    message: str,
) -> None:
    before = snapshot(path)
    with pytest.raises(error) as info:
        call(populated)
    assert message in info.value.message
    assert snapshot(path) == before
    assert not populated._conn.in_transaction  # white-box: no transaction left open


# --- two processes on one file (CLI + server) ---------------------------------------------------


def test_two_connections_see_each_others_writes(path: Path) -> None:
    with DirectoryDB(path, hasher=CHEAP) as cli, DirectoryDB(path, hasher=CHEAP) as server:
        cli.add_domain("ours.example")
        cli.add_account("bob@ours.example", "pw")
        assert server.get_account("bob@ours.example").enabled
        server.set_enabled("bob@ours.example", False)
        assert not cli.get_account("bob@ours.example").enabled


def test_writer_waits_for_the_other_writer(path: Path) -> None:
    DirectoryDB(path, hasher=CHEAP).close()  # create the schema first
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the server, in the middle of a write
    finished = threading.Event()
    errors: list[BaseException] = []

    def cli_process() -> None:  # the connection belongs to the thread that made it
        try:
            with DirectoryDB(path, hasher=CHEAP) as cli:
                cli.add_domain("ours.example")
        except BaseException as exc:
            errors.append(exc)
        finished.set()

    started = time.monotonic()
    thread = threading.Thread(target=cli_process)
    thread.start()
    try:
        time.sleep(0.3)
        assert not finished.is_set()  # waiting on busy_timeout, not failing
    finally:
        holder.execute("COMMIT")
        thread.join(5)
        holder.close()
    assert finished.is_set() and not errors
    assert time.monotonic() - started >= 0.3
    with DirectoryDB(path, hasher=CHEAP) as again:
        assert [d.name for d in again.list_domains()] == ["ours.example"]


def test_busy_timeout_expires_with_a_clear_error(path: Path) -> None:
    with DirectoryDB(path, hasher=CHEAP, busy_timeout=0.1) as cli:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                cli.add_domain("ours.example")
            assert not cli._conn.in_transaction
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        cli.add_domain("ours.example")  # and it works once the lock is gone


def test_readers_are_not_blocked_by_a_writer(populated: DirectoryDB, path: Path) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM aliases")
    try:
        started = time.monotonic()
        assert populated.resolve("team@ours.example").status is ResolveStatus.OK  # old snapshot
        assert time.monotonic() - started < 0.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
