"""The account directory: domains, accounts, aliases, passwords, recipient resolution.

- `DirectoryDB` (``db``): the synchronous SQLite core, used directly by the ``posthorn`` CLI.
- `Directory` (``service``): the server's async facade (database thread + hashing pool + auth
  cache).
- `resolve` (``resolve``): pure alias / catch-all / plus-addressing expansion.
- `Hasher`, `generate_password` (``passwords``), `AuthCache` (``authcache``),
  `parse_size` (``sizes``), and the `DirectoryError` family (``errors``).
"""

from __future__ import annotations

from posthorn.directory.authcache import AuthCache
from posthorn.directory.db import DIRECTORY_FILENAME, Account, Alias, DirectoryDB, Domain
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
from posthorn.directory.passwords import (
    PRODUCTION_PARAMS,
    Hasher,
    HashParams,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from posthorn.directory.resolve import (
    MAX_ALIAS_DEPTH,
    LocalTarget,
    Lookup,
    Resolution,
    ResolveStatus,
    resolve,
)
from posthorn.directory.service import Directory
from posthorn.directory.sizes import format_size, parse_size

__all__ = [
    "DIRECTORY_FILENAME",
    "MAX_ALIAS_DEPTH",
    "PRODUCTION_PARAMS",
    "Account",
    "AddressInUse",
    "Alias",
    "AliasLoop",
    "AuthCache",
    "BadAddress",
    "BadPasswordHash",
    "BadSize",
    "Directory",
    "DirectoryDB",
    "DirectoryError",
    "Domain",
    "DomainInUse",
    "DuplicateAccount",
    "DuplicateDomain",
    "EmptyPassword",
    "HashParams",
    "Hasher",
    "LocalTarget",
    "Lookup",
    "NoSuchAccount",
    "NoSuchAlias",
    "Resolution",
    "ResolveStatus",
    "SchemaTooNew",
    "UnknownDomain",
    "format_size",
    "generate_password",
    "hash_password",
    "needs_rehash",
    "parse_size",
    "resolve",
    "verify_password",
]
