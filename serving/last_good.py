"""A local copy of the last champion that loaded, served when the registry's version cannot be.

Each champion is downloaded into a folder of its own under ``root`` and loaded from there; the
folder becomes the last good copy only once the model has loaded and answered (its metadata
file is written last, atomically), and older copies are deleted after that. A folder without
metadata is a download that did not finish (a crash, a failed load) and is never served.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from serving.journal import fsync_dir

META = "fraudops_last_good.json"
MODEL = "model"
# An unfinished download older than this is a leftover (another worker may be mid-download).
STALE_S = 3_600.0


@dataclass(frozen=True)
class SavedModel:
    """One kept copy: the model folder and what it is."""

    path: Path
    name: str
    version: str
    saved_at: str


def _read(folder: Path) -> SavedModel | None:
    try:
        meta = json.loads((folder / META).read_text())
        return SavedModel(folder / MODEL, meta["name"], str(meta["version"]), meta["saved_at"])
    except (OSError, ValueError, KeyError):
        return None


def _superseded(folder: Path, saved_at: str) -> bool:
    """An older kept copy, or a stale unfinished download (never a newer copy: another worker
    may have kept one meanwhile)."""
    saved = _read(folder)
    if saved is not None:
        return saved.saved_at < saved_at
    return time.time() - folder.stat().st_mtime > STALE_S


class LastGood:
    """The kept copies under ``root`` (one normally; more only while a new one is kept)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def staging(self) -> Path:
        """A new, empty folder to download a model into (``<folder>/model``)."""
        folder = self.root / uuid.uuid4().hex
        (folder / MODEL).mkdir(parents=True)
        return folder

    def discard(self, folder: Path) -> None:
        """Delete a staging folder whose model did not load."""
        shutil.rmtree(folder, ignore_errors=True)

    def keep(self, folder: Path, name: str, version: str) -> None:
        """Make ``folder`` the last good copy, then delete the older ones."""
        saved_at = dt.datetime.now(dt.UTC).isoformat()
        meta = {"name": name, "version": version, "saved_at": saved_at}
        tmp = folder / f"{META}.tmp"
        with tmp.open("w") as out:
            json.dump(meta, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(folder / META)
        fsync_dir(folder)
        for other in self.root.iterdir():
            if other != folder and other.is_dir() and _superseded(other, saved_at):
                shutil.rmtree(other, ignore_errors=True)

    def newest(self) -> SavedModel | None:
        """The most recently kept copy, or None."""
        if not self.root.is_dir():
            return None
        saved = [s for s in (_read(f) for f in self.root.iterdir() if f.is_dir()) if s]
        return max(saved, key=lambda s: s.saved_at, default=None)
