"""Long work shows a bar on a terminal and plain periodic lines in a log file, never bar redraws."""

import io
import sys

from tokenizer.progress import Lines, progress


def test_a_log_file_gets_plain_lines_not_bar_redraws(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    bar = progress(range(5), desc="counting", unit="doc", every=0.0)
    assert isinstance(bar, Lines)
    assert list(bar) == [0, 1, 2, 3, 4]
    lines = sys.stderr.getvalue().splitlines()
    assert lines[0].startswith("counting: 1/5 doc (") and lines[-1].startswith("counting: 5/5 doc (")
    assert "\r" not in sys.stderr.getvalue()


def test_lines_are_periodic_and_a_disabled_progress_is_silent(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress(total=1000, desc="shards", unit="shard", every=3600) as bar:
        for _ in range(1000):
            bar.update()
    assert sys.stderr.getvalue().splitlines() == [sys.stderr.getvalue().splitlines()[0]]  # only the final line
    assert sys.stderr.getvalue().startswith("shards: 1,000/1,000 shard")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress(range(3), enabled=False)) == [0, 1, 2] and sys.stderr.getvalue() == ""
