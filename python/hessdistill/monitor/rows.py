"""A CSV that a monitor appends one row to per record, flushed at once: a run that dies keeps every row so far."""

from __future__ import annotations

import csv
import os
from typing import Sequence


class CsvRows:
    """Header written on creation; ``write(row)`` appends and flushes; ``path=None`` keeps nothing."""

    def __init__(self, path: str | os.PathLike | None, columns: Sequence[str]):
        self.path = path
        self._file = None
        if path is not None:
            self._file = open(path, "w", newline="")
            self._writer = csv.writer(self._file)
            self.write(columns)

    def write(self, row: Sequence) -> None:
        if self._file is not None:
            self._writer.writerow(row)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
