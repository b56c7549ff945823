"""Progress of long work: a tqdm bar on a terminal, plain periodic lines anywhere else.

A bar redraws itself many times a second; in a log file (a batch job, `nohup`, a pipeline
script capturing output) that is thousands of carriage-return fragments on one line. So
`progress` gives a bar only when stderr is a terminal, and otherwise a reporter with the
same interface (iterate, `update`, `close`, `with`) that prints one line `desc: n/total unit
(rate/s)` at most every `every` seconds and once at the end. Every long-running loop of the
library (tokenizer training, corpus preparation, evaluation, sweeps) goes through here; the
training loop's step lines are slm.train.monitor.Progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

EVERY_SECONDS = 30.0


class Lines:
    """tqdm's interface for a log file: a plain line at most every `every` seconds."""

    def __init__(self, iterable: Iterable | None, *, total: int | None, desc: str, unit: str, every: float):
        self.iterable, self.total, self.desc, self.unit, self.every = iterable, total, desc, unit, every
        self.n = 0
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        rate = self.n / max(now - self.start, 1e-9)
        print(f"{self.desc}: {done} {self.unit.strip()} ({rate:,.1f}/s)", file=sys.stderr, flush=True)

    def set_postfix(self, *args, **kwargs) -> None:
        """Bars show extra fields; lines keep to the count."""

    def close(self) -> None:
        if self.n and self.last is not None:
            self._line(time.perf_counter())
            self.last = None  # one final line, however often close is called

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, every: float = EVERY_SECONDS, **bar_options):
    """A tqdm bar over `iterable` (or updated by hand) on a terminal, `Lines` otherwise; with
    `enabled` false, silent. `bar_options` go to tqdm only (position, leave, unit_scale...)."""
    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, **bar_options)
    if iterable is not None and total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return Lines(iterable, total=total, desc=desc, unit=unit, every=every)
