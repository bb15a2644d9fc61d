"""Every file atst-sed writes goes through here: one place decides *how* a target is written.

- A regular file, or a path that does not exist yet: written to a temporary file beside it, then
  renamed over it (``os.replace``), so a reader never sees half a file and an error leaves the old
  one intact. The file keeps its permission bits.
- A symbolic link: the same, on the file it points to, so the link survives.
- A character or block device (``/dev/null``) or a named pipe (FIFO): written in place, streaming —
  renaming a file over ``/dev/null`` would turn it into a regular file for the whole machine.
- ``-``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: written to that already open descriptor
  (``-`` and ``/dev/stdout`` are the same thing: Python's ``sys.stdout``).
- A folder or a socket: refused with one line (:class:`~atst_sed.errors.InputError`).

Options that need a folder (score folders, plot folders, run folders) call
:func:`check_output_folder`, which refuses devices, pipes and files.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO, Literal

from atst_sed.errors import InputError

_UMASK = os.umask(0)  # the umask can only be read by setting it: restore it at once
os.umask(_UMASK)

_DESCRIPTOR_NAME = re.compile(r"^/(?:dev/fd|proc/self/fd)/(\d+)$")
_STANDARD_NAMES = {"-": 1, "/dev/stdout": 1, "/dev/stderr": 2}

#: How a target is written: ``replace`` (temporary file + rename), ``stream`` (device / FIFO, in
#: place) or ``descriptor`` (an open file descriptor of this process).
OutputMode = Literal["replace", "stream", "descriptor"]


@dataclass(frozen=True)
class OutputTarget:
    """Where the bytes for a user-given output path go, and how."""

    path: Path  # replace: the resolved file (symlinks followed); otherwise the path as given
    mode: OutputMode
    descriptor: int | None = None


def describe(path: str | PathLike[str]) -> str:
    """What ``path`` is, in words (``"character device"``, ``"named pipe (FIFO)"``, …)."""
    descriptor = _descriptor_of(path)
    if descriptor is not None:
        return {1: "standard output", 2: "standard error"}.get(descriptor, "an open file descriptor")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISREG, "regular file"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _descriptor_of(path: str | PathLike[str]) -> int | None:
    text = os.fspath(path)
    if text in _STANDARD_NAMES:
        return _STANDARD_NAMES[text]
    match = _DESCRIPTOR_NAME.match(text)
    return int(match.group(1)) if match else None


def resolve_output(path: str | PathLike[str]) -> OutputTarget:
    """Decide how ``path`` is written (see the module docstring); raises :class:`InputError` for a
    folder or a socket."""
    descriptor = _descriptor_of(path)
    if descriptor is not None:
        return OutputTarget(Path(os.fspath(path)), "descriptor", descriptor)
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a link to /dev/null is a device
    except FileNotFoundError:
        return OutputTarget(Path(os.path.realpath(path)), "replace")  # new file (or dangling link's target)
    except OSError as err:
        raise InputError(path, f"cannot write ({err.strerror})") from None
    if stat.S_ISREG(mode):
        return OutputTarget(Path(os.path.realpath(path)), "replace")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        return OutputTarget(path, "stream")
    raise InputError(path, f"is a {describe(path)}; expected a file name")


@contextlib.contextmanager
def open_output(path: str | PathLike[str], *, seekable: bool = False) -> Iterator[BinaryIO]:
    """A binary handle for writing the output ``path``; the target is complete when the block ends.

    Devices, pipes and descriptors get a non-seekable stream (zip-based writers then write
    sequentially); ``seekable=True`` is for writers that must seek back (WAV headers): such a
    target then receives the bytes from an in-memory buffer at the end. An error inside the block
    leaves a regular file as it was (devices and pipes have already received what was written).
    """
    target = resolve_output(path)
    if target.mode == "replace":
        with _replacing(target.path) as handle:
            yield handle
        return
    with _in_place(target) as handle:
        if seekable:  # the writer seeks back: give it memory, then stream the result
            buffer = io.BytesIO()
            yield buffer
            handle.write(buffer.getvalue())
        else:
            yield _Stream(handle)


class _Stream(io.RawIOBase):
    """A write-only, non-seekable view of a device, pipe or descriptor. Writers that would seek
    (zipfile: np.savez, torch.save, packages) see that they cannot and write sequentially; a null
    device would otherwise answer every ``tell()`` with 0 and break their offsets."""

    def __init__(self, handle: BinaryIO):
        super().__init__()
        self._handle = handle

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._handle.write(data)
        return len(data)

    def flush(self) -> None:
        if not self._handle.closed:
            self._handle.flush()


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` (resolved: a regular file or new) that replaces it on success
    and is removed on error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise InputError(path, f"cannot write ({err.strerror})") from None
    tmp = Path(name)
    try:
        try:
            permissions = stat.S_IMODE(os.stat(path).st_mode)  # keep a replaced file's permissions
        except FileNotFoundError:
            permissions = 0o666 & ~_UMASK  # mkstemp creates 0600; give a new file the usual ones
        os.fchmod(fd, permissions)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    with _temporary_beside(path) as tmp, open(tmp, "wb") as handle:
        yield handle


@contextlib.contextmanager
def _in_place(target: OutputTarget) -> Iterator[BinaryIO]:
    """A handle on a device, a FIFO or an open descriptor; closed (or flushed) at the end."""
    if target.descriptor in (1, 2):
        stream = sys.stdout if target.descriptor == 1 else sys.stderr
        stream.flush()  # text already printed comes first
        binary = getattr(stream, "buffer", None)
        if binary is None:  # a text-only stream (e.g. redirect_stdout(StringIO)): text outputs only
            buffer = io.BytesIO()
            yield buffer
            stream.write(buffer.getvalue().decode("utf-8"))
        else:
            yield binary
            binary.flush()
        stream.flush()
        return
    try:
        if target.descriptor is not None:
            handle = os.fdopen(os.dup(target.descriptor), "wb")
        else:
            handle = open(target.path, "wb")  # noqa: SIM115 (closed below) — no rename: write in place
    except OSError as err:
        raise InputError(target.path, f"cannot write ({err.strerror})") from None
    with handle:
        yield handle


@contextlib.contextmanager
def atomic_path(path: str | PathLike[str]) -> Iterator[Path]:
    """A file *name* for writers that cannot take a handle (prefer :func:`open_output`).

    Regular files and new paths: a temporary file beside the (resolved) target, renamed over it on
    success and removed on error. Devices and FIFOs: the path itself (written in place).
    Descriptors (``-``, ``/dev/stdout``): a private temporary file whose bytes are then written there.
    """
    target = resolve_output(path)
    if target.mode == "stream":
        yield target.path
        return
    if target.mode == "replace":
        with _temporary_beside(target.path) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="atst-sed-") as folder:
        tmp = Path(folder) / "output"
        yield tmp
        with open(tmp, "rb") as source, open_output(path) as handle:
            shutil.copyfileobj(source, handle)


def atomic_write_bytes(path: str | PathLike[str], data: bytes) -> None:
    """Write ``data`` to the output ``path`` (atomically when it is a regular file or new)."""
    with open_output(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to the output ``path`` (atomically when it is a regular file or new)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(value: Any) -> Any:
    """Plain JSON values: NumPy scalars as Python numbers, NaN/Inf as None, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | PathLike[str], data: Any) -> None:
    """Pretty JSON (indent 2, NaN/Inf → null) to the output ``path``."""
    atomic_write_text(path, json.dumps(json_ready(data), indent=2, sort_keys=False) + "\n")


def copy_file(source: str | PathLike[str], target: str | PathLike[str]) -> None:
    """Copy the file ``source`` to the output ``target``."""
    with open(source, "rb") as reader, open_output(target) as handle:
        shutil.copyfileobj(reader, handle)


def is_standard_output(path: str | PathLike[str] | None) -> bool:
    """Whether ``path`` names this process's standard output (``-`` or ``/dev/stdout``)."""
    return path is not None and _descriptor_of(path) == 1


def check_output_folder(path: str | PathLike[str], option: str) -> Path:
    """``path`` as a folder for outputs: refuses standard output, devices, pipes and files with one line
    naming ``option`` (e.g. ``"--scores-dir"``). The folder is not created here."""
    if _descriptor_of(path) is not None:
        raise InputError(path, f"{option} needs a folder, not {describe(path)}")
    path = Path(path)
    for part in (path, *path.parents):  # the nearest part that exists must be a folder
        kind = describe(part)
        if kind == "folder":
            return path
        if kind != "missing":
            where = "this" if part == path else f"{part}"
            raise InputError(path, f"{option} needs a folder; {where} is a {kind}")
    return path
