"""Per-photo arrays cached on disk, keyed by the file (path, size, mtime): re-running an evaluation embeds only the
photos that changed. One ``.npz`` per photo, written atomically (a killed run leaves no half-written entry)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


class RowCache:
    """``folder`` holds one entry per photo; a different network config needs a different folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entry(self, path: Path) -> Path:
        st = path.stat()
        digest = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npz"

    def load(self, path: Path) -> dict[str, np.ndarray] | None:
        """The arrays stored for ``path``, or None when it has no entry (or the file changed since)."""
        entry = self.entry(path)
        if not entry.is_file():
            return None
        with np.load(entry) as z:
            return {k: z[k] for k in z.files}

    def save(self, path: Path, **arrays: np.ndarray) -> None:
        entry = self.entry(path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(entry)
