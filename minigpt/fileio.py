"""Durable file operations: fsynced and atomic writes, directory swaps, file hashes.

Every file minigpt writes for the user (datasets, tokenizers, checkpoints, downloads)
goes through here, so that a crash or a full disk at any moment leaves either the old
file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from minigpt.errors import MinigptError

MAX_NAME_BYTES = 200  # longer user names are hashed in internal names (a name holds 255)

# What every public function of minigpt takes for a path: a str or any os.PathLike, made
# a pathlib.Path once, where the function starts (`Path(path)`).
PathLike = str | os.PathLike[str]


class NotRegularFileError(OSError):
    """A path that names a pipe, a device or a socket where a file was expected."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EINVAL, "not a regular file (a pipe or a device?)", str(path))


def open_regular(path: Path) -> BinaryIO:
    """Open a file for reading, refusing anything but a regular file: reading a FIFO
    would wait forever for a writer, and a device may never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once this way
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write a new file and flush it to disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp sibling, fsync, rename. A symbolic link is
    followed (its target is what gets replaced); the file keeps the mode it had, and a
    new one gets the user's umask, as any other tool's would."""
    path = Path(os.path.realpath(path)) if path.is_symlink() else path
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~current_umask()
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error_fix(error: Exception, writable: str) -> str:
    """What to do about a failed write, by its cause (never blame the disk for another
    error); `writable` says how to choose a writable place. Empty or ending in "; "."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free some space; "
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{writable}; "
    return ""


def current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def temp_prefix(beside: Path) -> str:
    """The name prefix of minigpt's temporary siblings of `beside`: hidden, and naming
    the process that writes them, so a later run can tell a stale one (its writer is
    gone) from one being written."""
    return hidden_name(beside, f"tmp-{os.getpid()}-").name


def remove_stale_temps(beside: Path) -> None:
    """Delete the temporary siblings of `beside` that processes now gone left behind
    (a kill in mid-write); a live process's are kept."""
    stem = hidden_name(beside, "tmp-").name
    for leftover in beside.parent.glob(f"{glob.escape(stem)}*"):
        owner = leftover.name[len(stem) :].split("-", 1)[0]
        if owner.isdigit() and not _process_alive(int(owner)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid: leave it alone
    return True


def hidden_name(path: Path, suffix: str) -> Path:
    """A hidden sibling of `path` for internal use: `.NAME.SUFFIX`, with NAME replaced by
    a hash when the user's name is long (the whole must stay under 255 bytes)."""
    name = path.name
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return path.with_name(f".{name}.{suffix}")


def parked(path: Path) -> Path:
    """Where `swap_dir_into_place` keeps the old directory while it swaps."""
    return hidden_name(path, "old")


def recover_parked(path: Path) -> None:
    """Put back the directory a crash left parked between the two renames of
    `swap_dir_into_place`, when nothing has taken its place since. Readers call this."""
    old = parked(path)
    if not os.path.lexists(path) and old.is_dir():
        try:
            os.rename(old, path)
        except OSError:  # another reader put it back first
            pass


def swap_dir_into_place(new: Path, dst: Path) -> None:
    """Rename the finished directory `new` to `dst`.

    An old `dst` is parked as `.dst.old` until `new` is in place, then removed. If a
    crash strikes between the two renames, `dst` is missing and the parked copy is
    complete: readers fall back to it and the next swap restores order.
    """
    old = parked(dst)
    if old.exists():  # left by an earlier crash (readers put it back: see recover_parked)
        if dst.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, dst)
    if dst.exists():
        os.rename(dst, old)
    os.rename(new, dst)
    fsync_path(dst.parent)
    shutil.rmtree(old, ignore_errors=True)


def make_temp_dir(beside: Path) -> Path:
    """A fresh hidden directory next to `beside`, on the same file system."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(beside)
    made = Path(tempfile.mkdtemp(prefix=temp_prefix(beside), dir=beside.parent))
    made.chmod(0o777 & ~current_umask())  # mkdtemp makes it private (0700)
    return made


class LockedError(Exception):
    """Another process holds the lock; `holder` is what it wrote in the lock file."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def exclusive(path: Path, owner: str) -> Iterator[None]:
    """Hold the lock file `path` for the block without waiting: raise `LockedError` with
    the holder's `owner` text when another process has it. A lock whose process died is
    free again (the kernel drops it), so a stale lock is simply taken over. The file is
    removed when the block ends, so nothing is left beside the user's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+b")  # noqa: SIM115 - closed below, after the unlink
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read(256).decode("utf-8", "replace").strip()
            f.close()
            raise LockedError(holder) from None
        if _same_file(f, path):
            break
        f.close()  # the holder removed it as we opened it: lock the new one
    try:
        f.truncate(0)
        f.write(owner.encode())
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # unlinked while locked: a waiter retries on a new file
        f.close()


def _same_file(f: BinaryIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on the file `path` (created if missing) for the block.
    The kernel drops it when the process dies, so a lock is never left stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_json_object(path: Path, max_bytes: int) -> dict[str, Any]:
    """A JSON object from a file of at most max_bytes, parsed strictly (no NaN or
    Infinity literals). Every file minigpt reads back from a user goes through here.

    Raises OSError when the file cannot be read, ValueError (naming the file) when it
    is too large, not UTF-8 JSON, or not an object."""
    with open_regular(path) as f:
        raw = f.read(max_bytes + 1)  # never more than the limit, whatever the file's size
    if len(raw) > max_bytes:
        raise ValueError(f"{path} is too large (larger than {max_bytes:,} bytes)")
    try:
        data = parse_json(raw)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def load_json_object(
    path: Path, max_bytes: int, error: type[MinigptError], fix: str = ""
) -> dict[str, Any]:
    """`read_json_object` with its failures raised as `error`: one line that names the
    file, then `fix` (what to do about it) when given."""
    try:
        return read_json_object(path, max_bytes)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise error(f"{e}; {fix}" if fix else str(e)) from e


def parse_json(raw: bytes) -> Any:
    """UTF-8 JSON parsed strictly: no NaN or Infinity literals; invalid UTF-8 and nesting
    too deep for the parser are a ValueError like any other malformed JSON."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError as e:
        raise ValueError("nested too deeply") from e


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
