"""Progress of long stages (teacher MD, labelling, training, MD): a tqdm bar on a terminal, one line per stage
elsewhere.

A tqdm bar redrawn into a log file or a CI console is thousands of carriage-return updates; when the stream is not
a terminal, a stage prints a single summary line when it ends instead ("label [ani1x]: 200/200 struct in 31.2 s").

Example
-------
>>> from hessdistill.progress import progress_bar
>>> with progress_bar(total=100, desc="label", unit="struct") as bar:
...     for _ in range(100):
...         bar.update(1)
"""

from __future__ import annotations

import sys
import time


class StageLine:
    """The non-terminal stand-in for a tqdm bar: counts updates, prints one line on ``close``."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0, file=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.postfix = ""
        self._file = file
        self._start = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        tail = f" ({self.postfix})" if self.postfix else ""
        line = f"{self.desc}: {count} {self.unit} in {time.perf_counter() - self._start:.1f} s{tail}"
        print(line, file=self._file or sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 nested: bool = False, file=None):
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a :class:`StageLine`; ``enabled=False``
    shows nothing at all, and neither does a ``nested`` bar (a step inside an outer stage, such as one structure's
    finite-difference Hessian inside labelling) off a terminal. Both kinds have ``update``, ``set_postfix``,
    ``close`` and work as context managers."""
    from tqdm import tqdm

    stream = file or sys.stderr
    terminal = getattr(stream, "isatty", lambda: False)()
    if not enabled or (nested and not terminal):
        return tqdm(total=total, disable=True)
    if terminal:
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, leave=not nested)
    return StageLine(total, desc, unit, initial=initial, file=stream)
