"""The unit that flows through the corpus pipeline, and the stage protocol.

Every stage (filter, deduplicator, decontaminator, quality classifier) is a
callable `stage(doc) -> Document | None`: None removes the document, a returned
document (possibly with changed text) goes on. The pipeline (slm.data.prepare)
counts documents in and out of every stage per source, so stages only decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Document:
    text: str
    source: str  # the mixture source it belongs to (e.g. "wikipedia", "textbooks")
    path: str  # the file it came from
    line: int  # its first line in that file (1-based), for reports and errors
    meta: dict = field(default_factory=dict)  # e.g. {"synthetic": True, "topic": "糖尿病"}


class Stage(Protocol):
    name: str

    def __call__(self, doc: Document) -> Document | None: ...
