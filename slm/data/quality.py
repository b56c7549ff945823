"""The report's text-quality classifier (§2.1), as an optional pipeline stage.

The recipe: sample documents from the corpus, have an instruction-tuned LM
label each as high (高) or low (低) quality, embed every document with an LM
(the final hidden state at its last token), fit a random forest on embeddings
and labels, and drop documents it scores as low quality. Labels can also come
from a file (`labels_from_file`), e.g. from human annotators or another model.

The report found the stage removed only about 1% of its already filtered data
at a large compute cost, and says as much; it is therefore off by default
(`QualityConfig.enabled`).

A fitted classifier is saved as its training set (embeddings, labels and the
settings) in a plain .npz and refit on load, which is deterministic for a fixed
random_state: loading never unpickles code, so a classifier file from someone
else is safe to open (a pickled forest would run whatever it contains).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizer.progress import progress as progress_bar

from slm.checkpoint import atomic_write
from slm.config import Config, ConfigError
from slm.data.document import Document
from slm.lm import LocalLM
from slm.data.readers import read_text, strict_jsonl_records
from tokenizer.corpus import CorpusError

logger = logging.getLogger(__name__)

# Our own wording of the instruction; the answer is a single character, 高 or 低.
DEFAULT_PROMPT = (
    "次の文章を読み、教科書や百科事典に載せられるほど正確で、まとまりがあり、読みやすい文章かどうかを判定してください。"
    "広告、断片的な文の羅列、意味の通らない文章は品質が低いものとします。"
    "品質が高ければ「高」、低ければ「低」とだけ答えてください。\n\n"
    "文章:\n{text}\n\n判定:"
)
DEFAULT_MAX_CHARS = 1000  # characters of each document the LM reads and the classifier embeds
FORMAT_VERSION = 1  # of the saved classifier file
_ANSWER = re.compile("[高低]")
_FILE_LABELS = {"1": 1, "0": 0, "高": 1, "低": 0, "high": 1, "low": 0}


@dataclasses.dataclass
class QualityConfig(Config):
    enabled: bool = False  # the report's stage removed ~1% of data at a high cost (see module doc)
    lm: str | None = None  # local model folder (ours or transformers) that labels and embeds
    sample_size: int = 100_000  # documents labelled by the LM, as in the report
    seed: int = 0  # the sample and the random forest
    threshold: float = 0.5  # keep documents with P(high) >= threshold
    prompt_template: str = DEFAULT_PROMPT  # must contain {text}
    max_chars: int = DEFAULT_MAX_CHARS
    labels_file: str | None = None  # JSONL/CSV labels to use instead of labelling with the LM
    n_estimators: int = 100  # trees in the forest (scikit-learn's default)
    batch_size: int = 8  # texts per LM call

    def validate(self) -> None:
        if self.enabled and not self.lm:
            raise ConfigError("QualityConfig.lm must name a model folder when the quality stage is enabled")
        for name in ("sample_size", "max_chars", "n_estimators", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"QualityConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"QualityConfig.threshold must be in [0, 1], got {self.threshold}")
        if "{text}" not in self.prompt_template:
            raise ConfigError("QualityConfig.prompt_template must contain {text}, where the document goes")


def snippet(text: str, max_chars: int) -> str:
    """The start of a document: what the LM labels and the classifier embeds, so both see the same text."""
    return text[:max_chars]


def parse_label(output: str) -> int | None:
    """1 for 高, 0 for 低, whichever comes first in the LM's answer; None when neither does."""
    match = _ANSWER.search(output)
    return None if match is None else int(match.group() == "高")


def label_with_lm(lm: LocalLM, docs: Sequence[Document], prompt_template: str = DEFAULT_PROMPT,
                  max_chars: int = DEFAULT_MAX_CHARS, batch_size: int = 8, max_new_tokens: int = 16,
                  progress: bool = False) -> list[int | None]:
    """Ask the LM (greedily) to rate each document; 1 = high, 0 = low, None = no 高/低 in its answer.

    LMs do not always follow the instruction (the report saw answers in English and
    unrelated text), so unparseable answers are kept as None, counted, and logged with
    a few examples rather than dropped or guessed.
    """
    if "{text}" not in prompt_template:
        raise ValueError("prompt_template must contain {text}, where the document goes")
    # str.replace, not format: a template may hold other braces (e.g. an example in JSON).
    prompts = [prompt_template.replace("{text}", snippet(d.text, max_chars)) for d in docs]
    answers: list[str] = []
    for start in progress_bar(range(0, len(prompts), batch_size), desc="labelling", unit="batch", enabled=progress):
        answers += [c.text for c in lm.generate(prompts[start : start + batch_size], max_new_tokens=max_new_tokens,
                                                 batch_size=batch_size)]
    labels = [parse_label(a) for a in answers]
    bad = [a for a, label in zip(answers, labels) if label is None]
    if bad:
        logger.warning("%d of %d LM answers contain neither 高 nor 低 (labelled None); e.g. %s",
                       len(bad), len(answers), [a[:40] for a in bad[:3]])
    return labels


def sample_documents(docs: Iterable[Document], n: int, seed: int) -> list[Document]:
    """n documents drawn uniformly from a stream of unknown length (reservoir sampling), in stream order."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, Document]] = []
    for i, doc in enumerate(docs):
        if i < n:
            reservoir.append((i, doc))
        else:
            j = rng.randint(0, i)
            if j < n:
                reservoir[j] = (i, doc)
    return [doc for _, doc in sorted(reservoir, key=lambda item: item[0])]


# ---------------------------------------------------------------- labels from a file


def document_id(doc: Document) -> str:
    """How a labels file names a document: its meta "id" (JSONL sources keep one), else "path:line"."""
    return str(doc.meta["id"]) if "id" in doc.meta else f"{doc.path}:{doc.line}"


@dataclasses.dataclass
class FileLabels:
    """Labels read from a file: rows that carry the text itself, and rows that name a document by id."""

    texts: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    ids: dict[str, int] = dataclasses.field(default_factory=dict)


def labels_from_file(path: str | Path) -> FileLabels:
    """Read labels from JSONL ({"text" or "id": ..., "label": ...} per line) or CSV (a header
    with text or id, and label). A label is 1/0, 高/低 or high/low. Errors name file and line."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = strict_jsonl_records(path)
    elif path.suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise CorpusError(f"{path}: labels must be a .jsonl or .csv file", path)
    labels, id_lines = FileLabels(), {}
    for line, row in rows:
        where = f"{path} line {line}"
        value = str(row.get("label", "")).strip().lower()
        if value not in _FILE_LABELS:
            raise CorpusError(f"{where}: label {row.get('label')!r} is not one of 1/0, 高/低, high/low", path)
        text, doc_id = (None if row.get(k) in (None, "") else row[k] for k in ("text", "id"))
        if (text is None) == (doc_id is None):
            raise CorpusError(f"{where}: give exactly one of 'text' and 'id'", path)
        if text is not None:
            labels.texts.append((str(text), _FILE_LABELS[value]))
        elif str(doc_id) in id_lines:
            raise CorpusError(f"{where}: id {doc_id!r} is labelled again (first on line {id_lines[str(doc_id)]})", path)
        else:
            labels.ids[str(doc_id)] = _FILE_LABELS[value]
            id_lines[str(doc_id)] = line
    if not labels.texts and not labels.ids:
        raise CorpusError(f"{path}: no labels", path)
    return labels


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    # UTF-8, a byte-order mark allowed (spreadsheets write one); another encoding names line, byte and fix
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "label" not in reader.fieldnames:
            raise CorpusError(f"{path} line 1: the header needs a 'label' column and a 'text' or 'id' column", path)
        for row in reader:
            yield reader.line_num, row


def resolve_labels(labels: FileLabels, docs: Iterable[Document]) -> tuple[list[str], list[int]]:
    """(texts, labels): the file's texts, and the corpus documents its ids name (streamed once)."""
    texts, values = [t for t, _ in labels.texts], [v for _, v in labels.texts]
    missing = dict(labels.ids)
    if missing:
        for doc in docs:
            label = missing.pop(document_id(doc), None)
            if label is not None:
                texts.append(doc.text)
                values.append(label)
    if missing:
        raise ValueError(f"{len(missing)} labelled id(s) match no document, e.g. {sorted(missing)[:5]}; "
                         "ids are a document's meta 'id' or 'path:line'")
    return texts, values


# ---------------------------------------------------------------- the classifier


class QualityClassifier:
    """A random forest on LM embeddings giving P(high quality), with the provenance of its features.

    `model` (the embedding LM's name) and `max_chars` (how much of each document was
    embedded) are saved with it, so the filter embeds documents the way training did.
    """

    def __init__(self, n_estimators: int = 100, random_state: int = 0, model: str = "",
                 max_chars: int = DEFAULT_MAX_CHARS):
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.model = model
        self.max_chars = max_chars
        self.embeddings: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self._forest = None

    def fit(self, embeddings: np.ndarray, labels: Sequence[int]) -> QualityClassifier:
        from sklearn.ensemble import RandomForestClassifier  # optional extra: slm[quality]

        embeddings = np.asarray(embeddings, dtype=np.float32)
        labels = np.asarray(labels)
        if embeddings.ndim != 2 or len(embeddings) != len(labels):
            raise ValueError(f"need embeddings (n, d) and n labels, got shapes {embeddings.shape} and {labels.shape}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels must be 0 (low) or 1 (high), got values {sorted(set(labels.tolist()))}")
        if len(np.unique(labels)) < 2:
            raise ValueError(f"all {len(labels)} labels are {labels[0] if len(labels) else 'missing'}; "
                             "the classifier needs examples of both high (1) and low (0) quality")
        self.embeddings, self.labels = embeddings, labels.astype(np.int8)
        # n_jobs only parallelises; every tree's randomness comes from random_state, so a refit is identical.
        self._forest = RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=-1)
        self._forest.fit(self.embeddings, self.labels)
        return self

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """P(high) for each row, shape (n,)."""
        if self._forest is None:
            raise RuntimeError("the classifier is not fitted: call fit() or load() first")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros(0)
        return self._forest.predict_proba(embeddings)[:, list(self._forest.classes_).index(1)]

    def save(self, path: str | Path) -> None:
        """Write the training set and settings as a plain .npz (no pickle)."""
        import sklearn  # optional extra: slm[quality]

        if self._forest is None:
            raise RuntimeError("the classifier is not fitted: nothing to save")
        arrays = dict(format_version=FORMAT_VERSION, embeddings=self.embeddings, labels=self.labels,
                      n_estimators=self.n_estimators, random_state=self.random_state, model=self.model,
                      max_chars=self.max_chars, sklearn_version=sklearn.__version__)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to another suffix
                np.savez(f, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> QualityClassifier:
        """Read a saved classifier and refit it (deterministic for the saved random_state)."""
        import sklearn  # optional extra: slm[quality]

        with np.load(path, allow_pickle=False) as f:
            if "format_version" not in f.files or int(f["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"{path} is not a quality classifier file of format {FORMAT_VERSION}")
            clf = cls(int(f["n_estimators"]), int(f["random_state"]), str(f["model"]), int(f["max_chars"]))
            embeddings, labels, saved_version = f["embeddings"], f["labels"], str(f["sklearn_version"])
        if saved_version != sklearn.__version__:
            warnings.warn(f"{path} was fitted with scikit-learn {saved_version}, this is {sklearn.__version__}; "
                          "the refit forest may differ slightly", stacklevel=2)
        return clf.fit(embeddings, labels)


def train_quality_classifier(lm: LocalLM, docs: Iterable[Document], config: QualityConfig,
                             progress: bool = False) -> QualityClassifier:
    """The report's recipe: label a sample with the LM (or read config.labels_file), embed, fit.

    Documents the LM could not label are left out of training, and the count is logged.
    """
    if config.labels_file:
        texts, labels = resolve_labels(labels_from_file(config.labels_file), docs)
    else:
        sample = sample_documents(docs, config.sample_size, config.seed)
        answers = label_with_lm(lm, sample, config.prompt_template, config.max_chars, config.batch_size, progress=progress)
        texts = [d.text for d, label in zip(sample, answers) if label is not None]
        labels = [label for label in answers if label is not None]
        logger.info("quality labels: %d high, %d low, %d unparseable (left out) of %d sampled documents",
                    sum(labels), len(labels) - sum(labels), len(answers) - len(labels), len(answers))
    embeddings = lm.embed([snippet(t, config.max_chars) for t in texts], batch_size=config.batch_size)
    return QualityClassifier(config.n_estimators, config.seed, lm.name, config.max_chars).fit(embeddings, labels)


class QualityFilter:
    """Pipeline stage "quality": keeps documents with P(high) >= threshold, noting P(high) in meta["quality"].

    The stage API is one document per call, which embeds one text at a time;
    `filter_batch` does the same for many documents with batched embedding, and is
    what a pipeline should call when it can.
    """

    name = "quality"

    def __init__(self, lm: LocalLM, classifier: QualityClassifier, threshold: float = 0.5, batch_size: int = 8):
        if classifier.model and classifier.model != lm.name:
            warnings.warn(f"the quality classifier was fitted on embeddings from {classifier.model!r}, "
                          f"not {lm.name!r}: its scores mean nothing for another model's embeddings", stacklevel=2)
        self.lm, self.classifier, self.threshold, self.batch_size = lm, classifier, threshold, batch_size

    def __call__(self, doc: Document) -> Document | None:
        return self.filter_batch([doc])[0]

    def filter_batch(self, docs: Sequence[Document]) -> list[Document | None]:
        embeddings = self.lm.embed([snippet(d.text, self.classifier.max_chars) for d in docs], batch_size=self.batch_size)
        scores = self.classifier.predict_proba(embeddings)
        return [dataclasses.replace(d, meta={**d.meta, "quality": float(p)}) if p >= self.threshold else None
                for d, p in zip(docs, scores)]
