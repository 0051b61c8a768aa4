"""The values the directory hands out: `Domain`, `Account`, `Alias` (frozen, plain data).

Their string fields are in the stored, normalised forms described in
`posthorn.directory.schema`; an `Account`'s ``password_hash`` stays out of its ``repr`` so a
logged account never carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from posthorn.mail.address import domain_to_unicode

__all__ = ["Account", "Alias", "Domain"]


@dataclass(frozen=True, slots=True)
class Domain:
    name: str  # lower-case A-labels
    created: datetime

    @property
    def unicode(self) -> str:
        return domain_to_unicode(self.name)


@dataclass(frozen=True, slots=True)
class Account:
    address: str  # Address.canonical
    password_hash: str = field(repr=False)
    quota_bytes: int | None  # None: unlimited
    enabled: bool
    created: datetime
    admin: bool = False  # may use the web admin pages (`posthorn user admin`)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # Address.canonical, or "@domain" for a catch-all
    targets: tuple[str, ...]

    @property
    def is_catch_all(self) -> bool:
        return self.source.startswith("@")
