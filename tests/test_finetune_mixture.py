"""Instruction mixtures by task and label, and the stratified selection split: counts, determinism,
and the tags read beside the conversations."""

import json
from collections import Counter

import pytest

from slm.config import ConfigError
from slm.data.readers import ReadErrors
from slm.finetune.mixture import (NO_LABEL, NO_TASK, InstructionMixture, Tag, counts, describe, load_tagged, mix,
                                  prepare, split_selection, tag_of)


def tags_of(spec: dict[str, dict[str | None, int]], untagged: int = 0) -> list[Tag]:
    """{task: {label: n}} as a list of tags, tasks interleaved (as a shuffled file would hold them)."""
    tags = [Tag(task, label) for task, labels in spec.items() for label, n in labels.items() for _ in range(n)]
    tags += [Tag()] * untagged
    return [tags[i] for i in sorted(range(len(tags)), key=lambda i: (i * 7919) % len(tags))]


def kept_counts(tags, indices):
    return Counter((tags[i].task, tags[i].label) for i in indices)


def test_tags_are_read_defensively():
    assert tag_of({"messages": [], "task": "smdis", "label": "B"}) == Tag("smdis", "B")
    assert tag_of({"task": "crade", "label": 3}) == Tag("crade", "3")
    assert tag_of({"task": "nrner", "label": "['発熱']"}) == Tag("nrner", None)  # NER answers are no categories
    assert tag_of({"task": "x", "label": ["a"]}) == tag_of({"task": "x", "label": True}) == Tag("x", None)
    assert tag_of({"label": "A"}) == tag_of({"task": ""}) == tag_of({"task": 3}) == Tag()


def test_balance_labels_downsamples_each_task_to_its_rarest_label():
    tags = tags_of({"smdis": {"A": 30, "B": 6, "C": 10}, "crade": {"1": 4, "2": 9}, "nrner": {None: 12}}, untagged=5)
    kept = mix(tags, InstructionMixture(balance_labels=True), seed=0)
    assert kept_counts(tags, kept) == {("smdis", "A"): 6, ("smdis", "B"): 6, ("smdis", "C"): 6, ("crade", "1"): 4,
                                       ("crade", "2"): 4, ("nrner", None): 12, (None, None): 5}
    # a number: at most that many a label, rarer labels keep all of theirs
    kept = mix(tags, InstructionMixture(balance_labels=8), seed=0)
    assert kept_counts(tags, kept) == {("smdis", "A"): 8, ("smdis", "B"): 6, ("smdis", "C"): 8, ("crade", "1"): 4,
                                       ("crade", "2"): 8, ("nrner", None): 12, (None, None): 5}
    assert kept == sorted(set(kept))  # once each, in file order


def test_caps_keep_label_proportions_and_weights_reshare_the_weighted_rows():
    tags = tags_of({"smdis": {"A": 60, "B": 20}, "crade": {"1": 10, "2": 10}, "jcsts": {"0": 5}})
    kept = mix(tags, InstructionMixture(cap={"smdis": 40}), seed=1)
    assert kept_counts(tags, kept) == {("smdis", "A"): 30, ("smdis", "B"): 10, ("crade", "1"): 10, ("crade", "2"): 10,
                                       ("jcsts", "0"): 5}
    # 100 rows of smdis and crade, shared 1:3; crade's 75 repeat its 20 rows (3 times over, then 15 more)
    kept = mix(tags, InstructionMixture(weights={"smdis": 1, "crade": 3}), seed=1)
    by_task = Counter(tags[i].task for i in kept)
    assert (by_task["smdis"], by_task["crade"], by_task["jcsts"]) == (25, 75, 5)
    crade = Counter(i for i in kept if tags[i].task == "crade")
    assert sorted(set(crade.values())) == [3, 4] and sum(v == 4 for v in crade.values()) == 15
    # both: balanced first, then capped
    kept = mix(tags, InstructionMixture(cap={"smdis": 10}, balance_labels=True), seed=1)
    assert kept_counts(tags, kept)[("smdis", "A")] == kept_counts(tags, kept)[("smdis", "B")] == 5


def test_mixtures_are_deterministic_by_seed_and_each_task_draws_on_its_own():
    tags = tags_of({"smdis": {"A": 50, "B": 50}, "crade": {"1": 40, "2": 40}})
    mixture = InstructionMixture(cap={"smdis": 30, "crade": 20})
    assert mix(tags, mixture, seed=3) == mix(tags, mixture, seed=3)
    assert mix(tags, mixture, seed=3) != mix(tags, mixture, seed=4)
    other = mix(tags, InstructionMixture(cap={"smdis": 30, "crade": 10}), seed=3)
    smdis = lambda kept: [i for i in kept if tags[i].task == "smdis"]  # noqa: E731
    assert smdis(other) == smdis(mix(tags, mixture, seed=3))  # crade's cap changes nothing of smdis


def test_bad_mixtures_are_named():
    with pytest.raises(ConfigError, match="both a cap and a weight"):
        InstructionMixture(cap={"a": 1}, weights={"a": 1.0})
    with pytest.raises(ConfigError, match="cap of 'a' must be a non-negative integer"):
        InstructionMixture(cap={"a": 1.5})
    with pytest.raises(ConfigError, match="unknown InstructionMixture field"):
        InstructionMixture.from_dict({"epochs": {"a": 1}})  # a pretraining mixture
    with pytest.raises(ConfigError, match="balance_labels must be"):
        InstructionMixture(balance_labels=0)
    with pytest.raises(ConfigError, match=r"names tasks \['medqa'\] that no training conversation carries"):
        mix(tags_of({"smdis": {"A": 2}}), InstructionMixture(cap={"medqa": 1}), seed=0)


def test_the_selection_split_is_stratified_disjoint_and_deterministic():
    tags = tags_of({"smdis": {"A": 200, "B": 40, "C": 60}, "crade": {"1": 100}, "nrner": {None: 50}}, untagged=50)
    train, held = split_selection(tags, 0.1, seed=0)
    assert not set(train) & set(held) and sorted(train + held) == list(range(len(tags)))
    assert kept_counts(tags, held) == {("smdis", "A"): 20, ("smdis", "B"): 4, ("smdis", "C"): 6, ("crade", "1"): 10,
                                       ("nrner", None): 5, (None, None): 5}
    assert split_selection(tags, 0.1, seed=0) == (train, held)
    assert split_selection(tags, 0.1, seed=1)[1] != held
    # small strata: the total is still the fraction, shared by the largest remainders
    small = tags_of({"t": {"A": 7, "B": 7, "C": 7}})
    assert len(split_selection(small, 0.5, seed=0)[1]) == round(0.5 * 21)


def test_tags_are_read_beside_load_conversations_and_the_counts_reported(tmp_path):
    def record(task, label, q):
        row = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": label or "['x']"}]}
        return json.dumps({**row, **({"task": task} if task else {}), **({"label": label} if label else {})},
                          ensure_ascii=False)

    lines = [record("smdis", "AB"[i % 4 == 0], f"質問{i}") for i in range(40)]
    lines += ['{"broken": ', json.dumps({"messages": [{"role": "user", "content": "答えなし"}]}), record(None, None, "素")]
    lines += [record("nrner", None, f"文{i}") for i in range(10)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = ReadErrors()
    conversations, tags = load_tagged([str(path)], errors)
    assert len(conversations) == len(tags) == 51 and errors.total == 2
    assert tags[40] == Tag() and conversations[41][0]["content"] == "文0" and tags[41] == Tag("nrner")
    data = prepare(train_files=[str(path)], eval_files=[], mixture=InstructionMixture(balance_labels=True),
                   selection_fraction=0.2, seed=0, errors=ReadErrors())
    assert data.report["selection"] == {"nrner": {NO_LABEL: 2}, "smdis": {"A": 6, "B": 2}}
    assert data.report["before"] == {NO_TASK: {NO_LABEL: 1}, "nrner": {NO_LABEL: 8}, "smdis": {"A": 24, "B": 8}}
    assert data.report["after"] == {NO_TASK: {NO_LABEL: 1}, "nrner": {NO_LABEL: 8}, "smdis": {"A": 8, "B": 8}}
    assert data.report["untagged"] == 1 and counts(data.train_tags) == data.report["after"]
    held = {c[0]["content"] for c in data.held_out}
    assert len(held) == 10 and not held & {c[0]["content"] for c in data.train}  # never trained on
    assert data.report["selection_untrained"] == {}
    # A task the mixture leaves out (a cap of 0) is not judged either: its held-out rows are set aside, said.
    data = prepare(train_files=[str(path)], eval_files=[], mixture=InstructionMixture(cap={"nrner": 0}),
                   selection_fraction=0.2, seed=0, errors=ReadErrors())
    assert "nrner" not in data.report["after"] and {t.task for t in data.held_out_tags} == {"smdis"}
    assert data.report["selection_untrained"] == {"nrner": {NO_LABEL: 2}} and "nrner" not in data.report["selection"]
    assert "nrner: (no label) 8->0; not trained on: 2 held out, not judged" in describe(data.report)
