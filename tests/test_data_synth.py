from collections import Counter

import pytest

from slm.data import synth
from slm.lm import Completion
from slm.data.synth import TEMPLATES, TOPIC_FILES, default_topics, generate_textbooks, load_topics, write_jsonl
from tokenizer.corpus import read_jsonl_records


class ScriptedLM:
    """Writes `write(prompt, seed)` for each prompt and records every call."""

    name = "scripted"

    def __init__(self, write=lambda prompt, seed: f"{prompt}への回答"):
        self.write, self.calls = write, []

    def generate(self, prompts, max_new_tokens=256, temperature=0.0, top_p=1.0, seed=None, batch_size=8):
        self.calls.append((list(prompts), seed))
        return [Completion(self.write(p, seed), True) for p in prompts]


def test_shipped_topics_and_templates():
    topics = default_topics()
    assert set(topics) == set(TOPIC_FILES) == set(TEMPLATES)
    for kind, kind_topics in topics.items():
        assert 35 <= len(kind_topics) <= 50, kind
        assert len(set(kind_topics)) == len(kind_topics) and all(t.strip() == t and t for t in kind_topics)
        assert all("{topic}" in template for template in TEMPLATES[kind].values())
    assert list(default_topics(["drug"])) == ["drug"]
    with pytest.raises(ValueError, match="unknown kind"):
        default_topics(["surgery"])


def test_load_topics_skips_comments_blanks_and_repeats(tmp_path):
    (tmp_path / "t.txt").write_text("# 循環器\n心不全\n\n 狭心症 \n心不全\n", encoding="utf-8")
    assert load_topics(tmp_path / "t.txt") == ["心不全", "狭心症"]
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no topics"):
        load_topics(tmp_path / "empty.txt")


def test_documents_carry_their_provenance():
    lm = ScriptedLM()
    docs = list(generate_textbooks(lm, {"disease": ["心不全"], "examination": ["心電図"]}, batch_size=2))
    assert [(d.meta["kind"], d.meta["template"]) for d in docs] == [
        ("disease", "textbook"), ("disease", "exercise"), ("examination", "textbook")]
    doc = docs[2]
    assert doc.source == "synthetic_textbooks" and doc.line == 3
    assert doc.meta == {"synthetic": True, "topic": "心電図", "kind": "examination", "template": "textbook",
                        "model": "scripted"}
    assert doc.text == TEMPLATES["examination"]["textbook"].replace("{topic}", "心電図") + "への回答"
    assert [seed for _, seed in lm.calls] == [0, 1]  # batch k is sampled with seed + k


def test_cap_per_topic_stops_generating_for_full_topics():
    lm, stats = ScriptedLM(lambda prompt, seed: f"{prompt} {seed}"), Counter()
    docs = list(generate_textbooks(lm, {"disease": ["心不全", "狭心症"]}, per_topic_cap=3, samples=4, batch_size=2,
                                   stats=stats))
    per_topic = Counter(d.meta["topic"] for d in docs)
    assert per_topic == {"心不全": 3, "狭心症": 3}
    # sample-major order: the cap keeps both templates; prompts of full topics are never generated
    assert Counter(d.meta["template"] for d in docs if d.meta["topic"] == "心不全") == {"textbook": 2, "exercise": 1}
    assert stats["prompts"] == 8 and stats["over_cap"] == 2 and stats["kept"] == 6


def test_duplicates_after_normalisation_and_empty_outputs_are_dropped_and_counted():
    answers = iter(["高血圧の解説。", "高血圧の解説。 ", "  ", "高血圧の  解説。", "ＡＢＣ", "ABC"])
    stats = Counter()
    docs = list(generate_textbooks(ScriptedLM(lambda prompt, seed: next(answers)), {"disease": ["a", "b", "c"]},
                                   per_topic_cap=5, stats=stats))
    assert [d.text for d in docs] == ["高血圧の解説。", "ＡＢＣ"]
    assert stats == Counter(prompts=6, kept=2, duplicate=3, empty=1)


def test_generation_is_reproducible_and_arguments_are_checked():
    def run():
        return [d.text for d in generate_textbooks(ScriptedLM(lambda p, seed: f"{p}|{seed}"),
                                                   {"drug": ["アスピリン", "ヘパリン"]}, batch_size=3, seed=5)]

    texts = run()
    assert texts == run() and [t.split("|")[1] for t in texts] == ["5", "5", "5", "6"]
    with pytest.raises(ValueError, match="no templates for kind"):
        next(generate_textbooks(ScriptedLM(), {"surgery": ["x"]}))
    with pytest.raises(ValueError, match="must contain {topic}"):
        next(generate_textbooks(ScriptedLM(), {"drug": ["x"]}, templates={"drug": {"plain": "解説して"}}))
    with pytest.raises(ValueError, match="positive"):
        next(generate_textbooks(ScriptedLM(), {"drug": ["x"]}, per_topic_cap=0))


def test_write_jsonl_writes_text_and_meta_that_the_corpus_reader_reads_back(tmp_path):
    docs = generate_textbooks(ScriptedLM(), {"examination": ["心電図", "胸部X線"]})
    assert write_jsonl(docs, tmp_path / "out" / "synth.jsonl") == 2
    records = list(read_jsonl_records(tmp_path / "out" / "synth.jsonl"))
    assert [line for line, _ in records] == [1, 2]
    assert records[1][1] == {"text": TEMPLATES["examination"]["textbook"].replace("{topic}", "胸部X線") + "への回答",
                             "synthetic": True, "topic": "胸部X線", "kind": "examination", "template": "textbook",
                             "model": "scripted"}


def test_cli_writes_the_file_and_reports_what_it_dropped(tmp_path, monkeypatch, capsys):
    lm = ScriptedLM(lambda prompt, seed: "同じ文")
    monkeypatch.setattr(synth, "load_lm", lambda path, device: lm)
    synth.main(["--model", "m", "--out", str(tmp_path / "s.jsonl"), "--kinds", "drug", "examination",
                "--max-topics", "2", "--per-topic", "1", "--batch-size", "4"])
    assert "wrote 1 documents" in capsys.readouterr().out
    assert sum(len(prompts) for prompts, _ in lm.calls) == 6  # 2 drugs x 2 templates + 2 examinations
    assert len((tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()) == 1
