"""Aozora Bunko's plain-text works, reduced to the text of the work.

A work file (Shift_JIS, `encoding: cp932`) is, in order:
- a header: the title and author lines, then usually a block between two lines
  of hyphens that explains the markup ("【テキスト中に現れる記号について】");
- the body, with inline markup: ruby `漢字《かんじ》` (with `｜` marking where
  the ruby's base starts when it is not obvious) and editor's notes
  `［＃...］` (headings, emphasis, indentation, and characters outside JIS,
  written `※［＃「description」、plane-row-cell］` in the body);
- a footer from the line starting `底本：` (rarely `定本：`: the source edition, who typed and
  proofread it, the Aozora Bunko notice).

`body` keeps the body's lines with the ruby readings, ruby markers and notes
removed (a `※` standing for a character a note describes goes with the note:
the character itself is not in the file). The header and footer are dropped,
and `AozoraStats` counts what was removed, so a corpus report can say it.
Without a hyphen block, the header is the lines before the first blank line;
without a `底本：` line, nothing is cut at the end (and the work is counted).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

RUBY = re.compile(r"《[^》]*》")
RUBY_START = "｜"
NOTE = re.compile(r"※?［＃[^］]*］")
RULE = re.compile(r"^-{20,}$")  # the lines around the markup explanation
FOOTER = ("底本：", "定本：")  # the source edition opens the footer (定本 in a few works)


def strip_markup(line: str, stats: Counter | None = None) -> str:
    """The line without ruby readings, ruby start markers and editor's notes."""
    line, n_ruby = RUBY.subn("", line)
    line, n_notes = NOTE.subn("", line)
    if stats is not None:
        stats["ruby"] += n_ruby
        stats["notes"] += n_notes
    return line.replace(RUBY_START, "")


def _header_length(lines: list[str]) -> int:
    """How many of a work's first lines are its header (see the module's docstring)."""
    rules = [i for i, line in enumerate(lines[:200]) if RULE.match(line.strip())]
    if len(rules) >= 2:
        return rules[1] + 1
    for i, line in enumerate(lines):
        if not line.strip():
            return i
    return 0


def bounds(lines: list[str | None]) -> tuple[int, int | None]:
    """Where a work's body starts and ends (None: at the end of the file), as list indices."""
    start = _header_length([line or "" for line in lines])
    end = next((i for i in range(start, len(lines)) if (lines[i] or "").startswith(FOOTER)), None)
    return start, end


def body(lines: Iterable[str | None], stats: Counter | None = None) -> Iterator[str | None]:
    """The body lines of one work, markup removed (None, an unreadable line, passes through)."""
    lines = list(lines)
    start, end = bounds(lines)
    if stats is not None:
        stats["works"] += 1
        stats["header_lines"] += start
        stats["footer_lines"] += len(lines) - end if end is not None else 0
        stats["works_without_footer"] += end is None
    for line in lines[start:end]:
        yield None if line is None else strip_markup(line, stats)
