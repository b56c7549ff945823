"""Which instruction conversations train, and which judge the checkpoints: task and label tags,
per-task mixtures, label balancing and the stratified selection split.

Converted benchmark rows carry `task` and `label` beside `messages` (JMED-LLM: the task's name and,
for a choice task, the answer letter). Without them a real mixture is lopsided (one task, or one
label of a task, outnumbers the rest), and a selection set drawn from it rewards a model that
always answers the majority label. Here:

- `InstructionMixture`: per-task caps or relative weights, and label balancing within each task;
- `split_selection`: a held-out selection set stratified by (task, label), never trained on;
- `prepare`: both applied to the training files, with the task x label counts before and after.

Every draw is seeded by the run's seed and the stratum's name (not by its position), so a run
resumed from a checkpoint trains on the same rows, and changing the cap of one task leaves the
rows drawn from every other task as they were. Conversations without a task are kept as they
are (and counted).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np

from slm.chat import ChatFormatError
from slm.checkpoint import atomic_write
from slm.config import Config, ConfigError
from slm.data.readers import ReadErrors
from slm.finetune.instructions import BINARY_FIX, ENCODING, load_conversations, to_messages
from slm.metrics import JMED_NER_TASKS
from tokenizer.corpus import list_files, read_jsonl_records, utf8_fix

NO_TASK = "(no task)"  # how counts and per-task scores name conversations without a task
NO_LABEL = "(no label)"


@dataclasses.dataclass(frozen=True)
class Tag:
    """A conversation's task and categorical label (None where its record has none)."""

    task: str | None = None
    label: str | None = None


def tag_of(record: dict) -> Tag:
    """The task and label of a JSONL record, read defensively: a task is a non-empty string; a label
    counts only beside a task and only as a category (a string or integer), never for an NER task,
    whose answer (a list of entities) is different in nearly every row and would make every row a
    stratum of its own."""
    task = record.get("task")
    if not isinstance(task, str) or not task:
        return Tag()
    label = record.get("label")
    categorical = isinstance(label, (str, int)) and not isinstance(label, bool) and str(label) != ""
    return Tag(task, str(label) if categorical and task not in JMED_NER_TASKS else None)


def _ignore(error: Exception) -> None:
    """Errors of the second reading: load_conversations has already counted (or raised) them."""


def load_tagged(paths: list[str], errors: ReadErrors) -> tuple[list[list[dict]], list[Tag]]:
    """The conversations of `paths` as load_conversations gives them (its errors, its order), and the
    tag of each: the files are read a second time for the records' task and label, which the
    conversations themselves do not keep."""
    conversations = load_conversations(paths, errors)
    tags = []
    for path in list_files(paths):
        for _, record in read_jsonl_records(path, None, ENCODING, _ignore, utf8_fix, BINARY_FIX):
            try:
                to_messages(record)  # the records load_conversations kept, and only those
            except ChatFormatError:
                continue
            tags.append(tag_of(record))
    if len(tags) != len(conversations):
        raise RuntimeError(f"{', '.join(map(str, paths))} changed while being read: {len(conversations)} "
                           f"conversations, then {len(tags)} tagged records")
    return conversations, tags


def counts(tags: Sequence[Tag]) -> dict[str, dict[str, int]]:
    """{task: {label: conversations}}, sorted, the untagged under NO_TASK / NO_LABEL."""
    found: dict[str, dict[str, int]] = {}
    for tag in tags:
        labels = found.setdefault(tag.task or NO_TASK, {})
        labels[tag.label or NO_LABEL] = labels.get(tag.label or NO_LABEL, 0) + 1
    return {task: dict(sorted(labels.items())) for task, labels in sorted(found.items())}


# ------------------------------------------------------------------ seeded draws

def _order(key) -> tuple:
    """A sort key for task/label keys that may hold None."""
    return tuple((x is not None, x or "") for x in (key if isinstance(key, tuple) else (key,)))


def _rng(seed: int, *names) -> np.random.Generator:
    """A generator of its own for each named stratum (crc32: Python's str hash changes per process)."""
    return np.random.default_rng([seed, zlib.crc32(json.dumps(names).encode("utf-8"))])


def _allocate(sizes: dict[Hashable, int], total: int) -> dict[Hashable, int]:
    """`total` shared out over the strata in proportion to their sizes (largest remainder, ties in
    stratum order): the proportions kept, and the total exact."""
    n = sum(sizes.values())
    if not n:
        return {key: 0 for key in sizes}
    share = {key: total * size / n for key, size in sizes.items()}
    given = {key: int(s) for key, s in share.items()}
    rest = sorted(sizes, key=lambda key: (given[key] - share[key], _order(key)))[: total - sum(given.values())]
    return {key: given[key] + (key in rest) for key in sizes}


def take(members: Sequence[int], k: int, *, stratum: Callable[[int], Hashable], seed: int, salt: str) -> list[int]:
    """`k` of `members`, sorted: all of them k // n times over, then the remainder drawn from each
    stratum in proportion to its size (seeded by the stratum's name)."""
    if not members or k <= 0:
        return []
    copies, rest = divmod(k, len(members))
    groups: dict[Hashable, list[int]] = {}
    for i in members:
        groups.setdefault(stratum(i), []).append(i)
    picked = list(members) * copies
    for key, want in _allocate({key: len(g) for key, g in groups.items()}, rest).items():
        group = groups[key]
        picked += [group[j] for j in _rng(seed, salt, *_order(key)).permutation(len(group))[:want]]
    return sorted(picked)


# ------------------------------------------------------------------ the mixture

@dataclasses.dataclass
class InstructionMixture(Config):
    """How the training conversations of each task blend (empty: every conversation once).

    cap: the most conversations a task keeps ({smdis: 2000}), drawn so that its labels keep their
    proportions. weights: relative shares of the weighted tasks, which together keep the number of
    rows they had; a task whose share exceeds its rows repeats them. A task has a cap or a weight,
    not both. balance_labels: within each task, every label downsampled to the rarest label's count
    (true), or to at most that many conversations (a number: rarer labels keep all of theirs);
    before the cap and the weights. In a task where some conversations have a label, those without
    one count as a label of their own; a task without labels is not balanced. Tasks named here
    must occur in the training data."""

    cap: dict[str, int] = dataclasses.field(default_factory=dict)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    balance_labels: bool | int = False

    def validate(self) -> None:
        both = set(self.cap) & set(self.weights)
        if both:
            raise ConfigError(f"InstructionMixture: tasks {sorted(both)} have both a cap and a weight; give one")
        for task, cap in self.cap.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ConfigError(f"InstructionMixture.cap of {task!r} must be a non-negative integer, got {cap!r}")
        for task, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ConfigError(f"InstructionMixture.weights of {task!r} must be a non-negative number, got {weight!r}")
        if self.weights and not sum(self.weights.values()):
            raise ConfigError("InstructionMixture.weights are all 0: no weighted task would be trained on")
        if self.balance_labels is not True and self.balance_labels is not False and self.balance_labels < 1:
            raise ConfigError(f"InstructionMixture.balance_labels must be true, false or a positive number of "
                              f"conversations per label, got {self.balance_labels!r}")

    def active(self) -> bool:
        return bool(self.cap or self.weights or self.balance_labels)


def mix(tags: Sequence[Tag], mixture: InstructionMixture, seed: int) -> list[int]:
    """The indices of the conversations to train on (sorted; repeated where a weight asks for more
    rows than the task has); untagged conversations all kept."""
    by_task: dict[str | None, list[int]] = {}
    for i, tag in enumerate(tags):
        by_task.setdefault(tag.task, []).append(i)
    unknown = sorted((set(mixture.cap) | set(mixture.weights)) - set(by_task))
    if unknown:
        found = sorted(t for t in by_task if t is not None)
        raise ConfigError(f"FinetuneConfig.mixture names tasks {unknown} that no training conversation carries "
                          f"(their tasks: {found or 'none: the records have no task field'})")
    label = lambda i: tags[i].label  # noqa: E731
    kept: dict[str | None, list[int]] = {}
    for task, members in by_task.items():
        groups: dict[str | None, list[int]] = {}
        for i in members:
            groups.setdefault(tags[i].label, []).append(i)
        # a task with no label at all (NER: its answers are no categories) has nothing to balance
        if task is not None and mixture.balance_labels and any(key is not None for key in groups):
            level = min(map(len, groups.values())) if mixture.balance_labels is True else mixture.balance_labels
            members = sorted(i for group in groups.values()
                             for i in take(group, min(len(group), level), stratum=label, seed=seed,
                                           salt=f"balance:{task}"))
        if task in mixture.cap and len(members) > mixture.cap[task]:
            members = take(members, mixture.cap[task], stratum=label, seed=seed, salt=f"cap:{task}")
        kept[task] = members
    weighted = sum(len(kept[task]) for task in mixture.weights)
    total = sum(mixture.weights.values())
    for task, weight in mixture.weights.items():
        kept[task] = take(kept[task], round(weighted * weight / total), stratum=label, seed=seed, salt=f"weight:{task}")
    return sorted(i for members in kept.values() for i in members)


def split_selection(tags: Sequence[Tag], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) indices: `fraction` of the conversations held out, shared over the
    (task, label) strata in proportion to their sizes, so that the selection set has the labels
    of the training data in their proportions."""
    held = set(take(range(len(tags)), round(fraction * len(tags)), stratum=lambda i: (tags[i].task, tags[i].label),
                    seed=seed, salt="selection"))
    return [i for i in range(len(tags)) if i not in held], sorted(held)


@dataclasses.dataclass
class Prepared:
    """The conversations to train on and to judge with, their tags, and the counts of each step."""

    train: list[list[dict]]
    train_tags: list[Tag]
    held_out: list[list[dict]]
    held_out_tags: list[Tag]
    report: dict  # {"before", "selection", "selection_untrained", "after": {task: {label: n}}, "untagged": n}


def prepare(*, train_files: list[str], eval_files: list[str], mixture: InstructionMixture,
            selection_fraction: float, seed: int, errors: ReadErrors) -> Prepared:
    """The training conversations after the selection split (when there are no eval_files and
    `selection_fraction` is set) and the mixture, and the held-out ones: eval_files, or the split
    less the tasks that the mixture leaves out of training (counted in "selection_untrained"):
    a checkpoint is judged on what it was taught."""
    conversations, tags = load_tagged(train_files, errors)
    if eval_files:
        held, held_tags = load_tagged(eval_files, errors)
        train = list(range(len(conversations)))
    elif selection_fraction:
        train, held_ids = split_selection(tags, selection_fraction, seed)
        held, held_tags = [conversations[i] for i in held_ids], [tags[i] for i in held_ids]
    else:
        train, held, held_tags = list(range(len(conversations))), [], []
    before = [tags[i] for i in train]
    chosen = [train[i] for i in mix(before, mixture, seed)] if mixture.active() else train
    untrained = []
    if not eval_files:  # the automatic split judges only the tasks the mixture trains on (a cap of 0 drops a task)
        trained = {tags[i].task for i in chosen}
        untrained = [t for t in held_tags if t.task not in trained]
        judged = [j for j, t in enumerate(held_tags) if t.task in trained]
        held, held_tags = [held[j] for j in judged], [held_tags[j] for j in judged]
    report = {"before": counts(before), "selection": counts(held_tags) if held_tags else {},
              "selection_untrained": counts(untrained), "after": counts([tags[i] for i in chosen]),
              "untagged": sum(tags[i].task is None for i in chosen)}
    return Prepared([conversations[i] for i in chosen], [tags[i] for i in chosen], held, held_tags, report)


def describe(report: dict) -> str:
    """The report's counts as lines: each task's labels, before -> after the mixture, and held out."""
    lines = []
    for task in sorted(set(report["before"]) | set(report["selection"]), key=lambda t: (t == NO_TASK, t)):
        before, after = report["before"].get(task, {}), report["after"].get(task, {})
        held, untrained = report["selection"].get(task, {}), report.get("selection_untrained", {}).get(task, {})
        cells = [f"{label} {before.get(label, 0)}->{after.get(label, 0)}" + (f" (+{held[label]} held out)"
                                                                             if held.get(label) else "")
                 for label in sorted(set(before) | set(held))]
        n = sum(untrained.values())
        note = f"; not trained on: {n} held out, not judged" if n else ""
        lines.append(f"  {task}: " + ", ".join(cells) + note)
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    text = json.dumps(report, ensure_ascii=False, indent=1) + "\n"
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
