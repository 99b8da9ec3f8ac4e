"""Atomic file writes: a temporary file beside the target, fsync, then a rename over it, so a
reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import io
import os
from typing import Any


def _temporary(path: str, pid: int) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    return os.path.join(directory, f".{os.path.basename(path)}.{pid}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str) -> list[str]:
    """Delete the temporary files that writers of `path` killed mid-write left behind
    (``.NAME.<pid>.tmp`` of processes no longer alive); returns their paths."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix, removed = f".{os.path.basename(path)}.", []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        pid = name[len(prefix):-len(".tmp")] if name.startswith(prefix) and \
            name.endswith(".tmp") else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale = os.path.join(directory, name)
            try:
                os.remove(stale)
                removed.append(stale)
            except OSError:
                pass
    return removed


def check_writable(path: str) -> None:
    """Raise OSError (naming `path`) unless a file can be written there the way
    :func:`write_bytes` writes it: its directory exists and takes a new file, and `path` is
    not a directory. Nothing is left behind."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    tmp = _temporary(path, os.getpid())
    try:
        with open(tmp, "wb"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
    """`data` to `path` atomically; stale temporaries of killed writers are removed first."""
    remove_stale_temporaries(path)
    tmp = _temporary(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_figure(fig: Any, path: str) -> None:
    """A matplotlib figure to `path` (format from the suffix, PNG without one), then closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
