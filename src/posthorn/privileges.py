"""Dropping root: `posthorn serve` started as root runs as ``server.user`` once it has what
only root can get.

What stays root's: binding the listeners (ports below 1024), reading the TLS key (a key file
readable only by root still loads), creating the data directory and taking its lock. Then
`give_data_dir` hands the data directory tree to the service user and `drop_to` switches the
process for good (supplementary groups cleared, real/effective/saved gid and uid all set, a
failed ``setuid(0)`` checked afterwards), before any database or message file is opened, so
every file the server creates from then on belongs to the service user.

The data directory tree is re-owned on *every* start, not just the first: an admin command run
as root while the server was stopped (``posthorn user add`` creating a database's ``-wal``
file, ``posthorn import`` writing message files with mode 0600) would otherwise leave files the
service user cannot open. The walk is careful because the tree is the service user's to write
and root is walking it: symbolic links are never followed nor re-owned (a link to
``/etc/shadow`` must not hand that file over), each file is re-owned through a descriptor
opened with ``O_NOFOLLOW`` (no swap between the check and the change), only regular files and
directories are touched, and a file with several hard links is re-owned only when the kernel
forbids linking to other users' files (``fs.protected_hardlinks = 1``, the Debian default);
otherwise it is left alone and counted as skipped.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Identity", "PrivilegeError", "drop_to", "give_data_dir", "resolve_identity"]

_PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks")


class PrivilegeError(Exception):
    """The configured identity cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The user and group the server runs as after the drop."""

    user: str
    uid: int
    group: str
    gid: int

    def __str__(self) -> str:
        return f"{self.user} (uid {self.uid}, gid {self.gid})"


def resolve_identity(user: str, group: str = "") -> Identity:
    """Look up ``user`` (a name or a number) and ``group`` (default: the user's primary group)."""
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise PrivilegeError(f"server.user: no such user {user!r} on this system") from None
    if not group:
        gid = pw.pw_gid
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
        return Identity(pw.pw_name, pw.pw_uid, group, gid)
    try:
        gr = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except (KeyError, OverflowError):
        raise PrivilegeError(f"server.group: no such group {group!r} on this system") from None
    return Identity(pw.pw_name, pw.pw_uid, gr.gr_name, gr.gr_gid)


@dataclass(frozen=True, slots=True)
class Handover:
    """What `give_data_dir` did: entries re-owned, and entries left alone (links, sockets,
    hard-linked files on a system without ``protected_hardlinks``)."""

    changed: int
    skipped: int


def give_data_dir(root: Path, who: Identity) -> Handover:
    """Make every directory and regular file under ``root`` (and ``root``) owned by ``who``.

    Only what is not already owned by ``who`` is changed, so a second start costs one
    ``lstat`` per entry. Never follows symbolic links (see the module docstring).
    """
    top = root.resolve()  # the configured path may itself be a link the admin made
    hardlinks_protected = _hardlinks_protected()
    changed = skipped = 0
    for _dirpath, _dirs, files, dirfd in os.fwalk(top, follow_symlinks=False):
        st = os.fstat(dirfd)
        if (st.st_uid, st.st_gid) != (who.uid, who.gid):
            os.fchown(dirfd, who.uid, who.gid)
            changed += 1
        for name in files:
            outcome = _give_file(dirfd, name, who, hardlinks_protected)
            changed += outcome is True
            skipped += outcome is False
    return Handover(changed, skipped)


def _give_file(dirfd: int, name: str, who: Identity, hardlinks_protected: bool) -> bool | None:
    """True: re-owned; None: already owned; False: left alone on purpose."""
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if (st.st_uid, st.st_gid) == (who.uid, who.gid):
        return None
    if not stat.S_ISREG(st.st_mode):
        return False  # symbolic links, sockets, FIFOs, devices: never root's to hand over
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dirfd)
    except FileNotFoundError:
        return None  # gone meanwhile
    except OSError:
        return False  # replaced by a link between the stat and the open (ELOOP)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_nlink > 1 and not hardlinks_protected):
            return False
        os.fchown(fd, who.uid, who.gid)
        return True
    finally:
        os.close(fd)


def _hardlinks_protected() -> bool:
    try:
        return _PROTECTED_HARDLINKS.read_text().strip() == "1"
    except OSError:
        return False


def drop_to(who: Identity) -> None:
    """Become ``who`` for good: no supplementary groups, every gid then every uid.

    Checked afterwards, including that root cannot be taken back; a failure is a
    `PrivilegeError` (the caller must not go on serving as root by accident).
    """
    try:
        os.setgroups([])
        os.setresgid(who.gid, who.gid, who.gid)
        os.setresuid(who.uid, who.uid, who.uid)
    except OSError as e:
        raise PrivilegeError(f"cannot switch to user {who}: {e.strerror or e}") from None
    if os.getresuid() != (who.uid,) * 3 or os.getresgid() != (who.gid,) * 3:
        raise PrivilegeError(f"switching to user {who} did not take effect")
    if os.getgroups() not in ([], [who.gid]):
        raise PrivilegeError(f"supplementary groups remain after switching to user {who}")
    if who.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PrivilegeError(f"root could be regained after switching to user {who}")
