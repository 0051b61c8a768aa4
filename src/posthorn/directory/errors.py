"""The errors the directory raises on purpose.

Every one is a `DirectoryError` whose message is written for the administrator who typed the
command (the CLI prints it as is; the web admin shows it). Whenever one is raised, the database
is unchanged: checks run inside the same transaction as the write they guard.
"""

from __future__ import annotations

__all__ = [
    "AddressInUse",
    "AliasLoop",
    "BadAddress",
    "BadPasswordHash",
    "BadSize",
    "DirectoryError",
    "DomainInUse",
    "DuplicateAccount",
    "DuplicateDomain",
    "EmptyPassword",
    "NoSuchAccount",
    "NoSuchAlias",
    "SchemaTooNew",
    "UnknownDomain",
]


class DirectoryError(Exception):
    """Base of the directory's deliberate errors; ``message`` is fit to show an admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadAddress(DirectoryError, ValueError):
    """An address or domain that does not parse (wraps `posthorn.mail.address.AddressError`)."""


class UnknownDomain(DirectoryError):
    """The domain is not one of ours."""


class DuplicateDomain(DirectoryError):
    """The domain is already ours."""


class DomainInUse(DirectoryError):
    """A domain cannot be deleted while accounts or aliases live in it."""


class DuplicateAccount(DirectoryError):
    """An account with that address already exists."""


class NoSuchAccount(DirectoryError):
    """No account has that address."""


class AddressInUse(DirectoryError):
    """The address is already taken by the other kind (an account vs an alias source)."""


class NoSuchAlias(DirectoryError):
    """No alias (or no such source → target pair) exists."""


class AliasLoop(DirectoryError):
    """The alias would point to itself."""


class EmptyPassword(DirectoryError, ValueError):
    """Passwords must not be empty."""


class BadPasswordHash(DirectoryError, ValueError):
    """A stored hash handed in directly is not an argon2 hash."""


class BadSize(DirectoryError, ValueError):
    """A quota size that `parse_size` cannot read."""


class SchemaTooNew(DirectoryError):
    """The database was written by a newer posthorn than this one."""
