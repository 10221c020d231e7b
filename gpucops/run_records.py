"""What a training run leaves in its folder beside ``checkpoint.pt``: the resolved config
(``config.yaml``), the step log (``log.csv``, with a header) and the rotated snapshots
(``snapshot_<step>.pt``). Written by rank 0 only (the trainer's job); every file that a reader
may open while the run goes on is replaced atomically."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import IO

import yaml

from .checkpoint import atomic_write

__all__ = ["RunLog", "keep_snapshot", "snapshots", "write_config"]


def write_config(path: str | Path, values: dict) -> None:
    """``values`` (a config as a dict) as YAML at ``path``, atomically; tuples become lists, so
    the file reads back with :meth:`~gpucops.trainer.TrainConfig.from_yaml`."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    text = yaml.safe_dump(plain, sort_keys=False)
    atomic_write(path, lambda handle: handle.write(text.encode()))


class RunLog:
    """``log.csv``: a header row (``columns``), then one row per step, its first cell the step.

    Opening it for a run resumed at ``step`` keeps the rows up to ``step`` and drops the later
    ones (the interrupted run logged them; they are done again), so each step is logged once. Rows
    of a log written before the header existed are kept; the header goes on top.
    """

    def __init__(self, path: str | Path, columns: list[str], step: int = 0):
        self.path = Path(path)
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [
                    row for row in csv.reader(handle)
                    if row and row[0].isdigit() and int(row[0]) <= step
                ]  # fmt: skip
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerows([columns, *rows])
        self.columns = columns
        self._handle: IO = open(self.path, "a", newline="")

    def write(self, values: dict) -> None:
        """One row; ``values`` has one entry per column."""
        missing = set(self.columns) - set(values)
        if missing:
            raise ValueError(f"log row lacks columns {sorted(missing)}")
        csv.writer(self._handle).writerow([values[c] for c in self.columns])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


_SNAPSHOT = re.compile(r"snapshot_(\d+)\.pt")


def snapshots(folder: str | Path) -> list[Path]:
    """The ``snapshot_<step>.pt`` files of ``folder``, oldest step first."""
    found = [(_SNAPSHOT.fullmatch(p.name), p) for p in Path(folder).iterdir()]
    return [p for _, p in sorted((int(m.group(1)), p) for m, p in found if m)]


def keep_snapshot(checkpoint: str | Path, step: int, keep: int) -> Path | None:
    """Keep the just written ``checkpoint`` as ``snapshot_<step>.pt`` beside it, then remove the
    oldest snapshots beyond ``keep`` (0: none kept). A hard link where the file system allows
    (``checkpoint.pt`` is replaced by rename, so the snapshot keeps this step's bytes; no copy of
    a large file), a copy otherwise; atomic either way."""
    checkpoint = Path(checkpoint)
    target = None
    if keep > 0:
        target = checkpoint.with_name(f"snapshot_{step}.pt")
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.unlink(missing_ok=True)
        try:
            os.link(checkpoint, temporary)
            os.replace(temporary, target)
        except OSError:
            atomic_write(target, lambda handle: handle.write(checkpoint.read_bytes()))
    for old in snapshots(checkpoint.parent)[: -keep or None]:
        old.unlink(missing_ok=True)
    return target
