import json
import logging

import numpy as np
import pytest

from slm.config import ConfigError
from slm.data.document import Document
from slm.lm import Completion
from slm.data.quality import (
    DEFAULT_PROMPT,
    FileLabels,
    QualityClassifier,
    QualityConfig,
    QualityFilter,
    label_with_lm,
    labels_from_file,
    parse_label,
    resolve_labels,
    sample_documents,
    train_quality_classifier,
)
from tokenizer.corpus import CorpusError


class FakeLM:
    """Canned answers and embeddings: 良 texts are high quality, 壊 texts get an off-instruction answer.

    The embedding marks which of 良, 悪 and 壊 a text holds, so a forest separates good from bad."""

    name = "fake"

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, max_new_tokens=256, temperature=0.0, top_p=1.0, seed=None, batch_size=8):
        self.prompts += prompts
        return [Completion("This text is fine." if "壊" in p else "品質は高です" if "良" in p else "低", True) for p in prompts]

    def embed(self, texts, batch_size=8):
        return np.array([[float(c in t) for c in "良悪壊"] for t in texts], dtype=np.float32)


def docs(n_good=12, n_bad=10, n_broken=3):
    texts = [f"良い文章{i}。" for i in range(n_good)] + [f"悪い{i}" for i in range(n_bad)] + [f"壊{i}" for i in range(n_broken)]
    return [Document(t, "web", "web.txt", i + 1) for i, t in enumerate(texts)]


def test_parse_label_takes_the_first_high_or_low_character():
    assert parse_label("高") == 1 and parse_label("低") == 0
    assert parse_label("  判定: 高品質です") == 1
    assert parse_label("低い。高くはない") == 0
    assert parse_label("High") is None and parse_label("") is None


def test_label_with_lm_labels_truncated_documents_and_reports_unparseable_answers(caplog):
    lm = FakeLM()
    with caplog.at_level(logging.WARNING, logger="slm.data.quality"):
        labels = label_with_lm(lm, docs(2, 2, 1), max_chars=3, batch_size=2)
    assert labels == [1, 1, 0, 0, None]
    assert "1 of 5 LM answers" in caplog.text and "This text is fine" in caplog.text
    assert lm.prompts[0] == DEFAULT_PROMPT.replace("{text}", "良い文")
    label_with_lm(lm, docs(1, 0, 0), prompt_template='{"例": 1} {text}')  # other braces are kept as they are
    assert lm.prompts[-1] == '{"例": 1} 良い文章0。'
    with pytest.raises(ValueError, match="{text}"):
        label_with_lm(lm, docs(1, 0, 0), prompt_template="no slot")


def test_sample_documents_is_seeded_uniform_and_in_stream_order():
    stream = docs(30, 30, 0)
    a = sample_documents(iter(stream), 10, seed=1)
    assert len(a) == 10 and a == sample_documents(iter(stream), 10, seed=1)
    assert [d.line for d in a] == sorted(d.line for d in a)
    assert a != sample_documents(iter(stream), 10, seed=2)
    assert sample_documents(iter(stream[:4]), 10, seed=1) == stream[:4]


def fitted(**kw):
    lm, sample = FakeLM(), docs(12, 10, 0)
    return QualityClassifier(n_estimators=20, **kw).fit(lm.embed([d.text for d in sample]), [1] * 12 + [0] * 10)


def test_classifier_scores_and_survives_a_save_and_load_exactly(tmp_path):
    clf = fitted(model="fake", max_chars=50)
    probe = FakeLM().embed(["良いね", "悪いね", "良"])
    p = clf.predict_proba(probe)
    assert p.shape == (3,) and p[0] > 0.5 > p[1] and p[2] > 0.5
    clf.save(tmp_path / "quality.classifier")  # any suffix: the file is an .npz without pickles
    loaded = QualityClassifier.load(tmp_path / "quality.classifier")
    np.testing.assert_array_equal(loaded.predict_proba(probe), p)
    assert (loaded.model, loaded.max_chars, loaded.n_estimators) == ("fake", 50, 20)
    assert clf.predict_proba(np.zeros((0, 3))).shape == (0,)


def test_classifier_rejects_bad_training_data_and_files(tmp_path):
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="both high"):
        QualityClassifier().fit(x, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="0 \\(low\\) or 1"):
        QualityClassifier().fit(x, [1, 0, 2, 1])
    with pytest.raises(ValueError, match="shapes"):
        QualityClassifier().fit(x, [1, 0])
    with pytest.raises(RuntimeError, match="not fitted"):
        QualityClassifier().predict_proba(x)
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a quality classifier"):
        QualityClassifier.load(tmp_path / "other.npz")


def test_quality_filter_keeps_documents_at_or_above_the_threshold():
    lm = FakeLM()
    stage = QualityFilter(lm, fitted(model="fake"), threshold=0.5)
    assert stage.name == "quality"
    good, bad = Document("良い文", "web", "a", 1, {"id": 7}), Document("悪い", "web", "a", 2)
    kept, dropped = stage.filter_batch([good, bad])
    assert dropped is None and kept.text == good.text
    assert kept.meta["id"] == 7 and kept.meta["quality"] > 0.5 and "quality" not in good.meta
    assert stage(good) == kept and stage(bad) is None
    assert all(QualityFilter(lm, stage.classifier, threshold=0.0).filter_batch([good, bad]))
    with pytest.warns(UserWarning, match="embeddings from 'other'"):
        QualityFilter(lm, fitted(model="other"))


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_labels_from_jsonl_and_csv(tmp_path):
    jsonl = write_lines(tmp_path / "l.jsonl", [json.dumps({"text": "良い文", "label": 1}, ensure_ascii=False), "",
                                               json.dumps({"id": "web.txt:3", "label": "低"})])
    labels = labels_from_file(jsonl)
    assert labels.texts == [("良い文", 1)] and labels.ids == {"web.txt:3": 0}
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("\ufefftext,label\n良い文,high\n\"悪い,文\",0\n", encoding="utf-8")  # BOM, quoted comma
    assert labels_from_file(csv_path).texts == [("良い文", 1), ("悪い,文", 0)]


@pytest.mark.parametrize("name, lines, message", [
    ("a.jsonl", ['{"text": "x", "label": 1}', "{oops"], "a.jsonl line 2: not valid JSON"),
    ("a.jsonl", ['{"text": "x", "label": "maybe"}'], "a.jsonl line 1: label 'maybe'"),
    ("a.jsonl", ['{"text": "x", "id": "1", "label": 1}'], "line 1: give exactly one of 'text' and 'id'"),
    ("a.jsonl", ['{"id": "1", "label": 1}', '{"id": "1", "label": 0}'], "line 2: id '1' is labelled again"),
    ("a.csv", ["text,score", "x,1"], "a.csv line 1: the header needs a 'label'"),
    ("a.csv", ["text,label", "x,1", "y,"], "a.csv line 3: label ''"),
    ("a.txt", ["x"], "must be a .jsonl or .csv"),
    ("a.jsonl", [""], "no labels"),
])
def test_bad_labels_files_name_the_file_and_line(tmp_path, name, lines, message):
    with pytest.raises(CorpusError, match=message):
        labels_from_file(write_lines(tmp_path / name, lines))


def test_resolve_labels_finds_documents_by_meta_id_or_path_and_line():
    corpus = docs(2, 2, 0)
    corpus[0].meta["id"] = "doc-a"
    file_labels = FileLabels(texts=[("外部の文", 1)], ids={"doc-a": 1, "web.txt:4": 0})
    assert resolve_labels(file_labels, iter(corpus)) == (["外部の文", "良い文章0。", "悪い1"], [1, 1, 0])
    with pytest.raises(ValueError, match="1 labelled id.*'web.txt:9'"):
        resolve_labels(FileLabels(ids={"web.txt:9": 1}), iter(corpus))


def test_quality_config_defaults_and_validation(tmp_path):
    config = QualityConfig()
    assert not config.enabled and config.threshold == 0.5 and "{text}" in config.prompt_template
    with pytest.raises(ConfigError, match="QualityConfig.lm"):
        QualityConfig(enabled=True)
    with pytest.raises(ConfigError, match="QualityConfig.threshold"):
        QualityConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="QualityConfig.prompt_template"):
        QualityConfig(prompt_template="評価して")
    config = QualityConfig(enabled=True, lm="runs/model", sample_size=10)
    config.save(tmp_path / "q.yaml")
    assert QualityConfig.load(tmp_path / "q.yaml") == config


def test_train_quality_classifier_from_lm_labels_or_a_labels_file(tmp_path, caplog):
    lm, corpus = FakeLM(), docs(12, 10, 3)
    config = QualityConfig(lm="fake", sample_size=100, n_estimators=10, max_chars=4)
    with caplog.at_level(logging.INFO, logger="slm.data.quality"):
        clf = train_quality_classifier(lm, corpus, config)
    assert "12 high, 10 low, 3 unparseable (left out) of 25" in caplog.text
    assert len(clf.labels) == 22 and (clf.model, clf.max_chars) == ("fake", 4)
    assert clf.predict_proba(lm.embed(["良い"]))[0] > 0.5

    write_lines(tmp_path / "l.jsonl", [json.dumps({"text": "良い", "label": 1}, ensure_ascii=False),
                                       json.dumps({"id": "web.txt:13", "label": 0})])
    clf = train_quality_classifier(lm, corpus, config.replace(labels_file=str(tmp_path / "l.jsonl")))
    assert clf.labels.tolist() == [1, 0]


def test_a_shift_jis_labels_file_is_named_with_line_byte_and_fix(tmp_path):
    from slm.data.quality import labels_from_file
    from tokenizer.corpus import CorpusError

    path = tmp_path / "labels.csv"
    path.write_bytes("text,label\r\n心不全の説明。,高\r\n".encode("cp932"))
    with pytest.raises(CorpusError, match=r"labels\.csv line 2: not valid utf-8 .*re-save it as UTF-8"):
        labels_from_file(path)
