"""Atomic file writes: a temporary file beside the target, fsync, then a rename over it, so a
reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import io
import os
from typing import Any


def write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
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
