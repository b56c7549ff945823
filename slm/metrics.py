"""Free-text answer metrics for QA fine-tunes, and the statistics that expose degeneration.

Medical QA fine-tunes (the LoRA reports in shared/reference, 003 and 004) are judged by what they
answer: exact match, token F1, ROUGE-L (Google's rouge-score) and BLEU (sacrebleu), and by the
failure they hit: answers that loop into endless lists and never stop. `degeneration` measures
that: distinct-n (unique n-grams over all n-grams of the outputs), the longest n-gram repeated
within one answer, and the share of answers that ran into the token limit without ending.

Text is split into words (English: lower-cased, punctuation and articles dropped, as SQuAD
scores) or, for Japanese, which has no spaces, into characters (`unit="chars"`).

The JMED-LLM task metrics live here too (Cohen's kappa of choice answers read as option letters,
set F1 of NER answers read as Python list literals), with the table of which task takes which:
evaluation reports them, and instruction tuning selects its checkpoints by them.

A module of its own, outside the pipeline stages: instruction tuning judges its checkpoints with
these metrics, and evaluation reports all of them; neither stage imports the other.
"""

from __future__ import annotations

import ast
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np

Unit = Literal["words", "chars"]
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str, unit: Unit = "words") -> str:
    """NFKC; for words also lower case without punctuation and articles (SQuAD's normalisation);
    for characters, whitespace removed."""
    text = unicodedata.normalize("NFKC", text or "")
    if unit == "chars":
        return "".join(text.split())
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str, unit: Unit = "words") -> list[str]:
    norm = normalize(text, unit)
    return list(norm) if unit == "chars" else norm.split()


def exact_match(prediction: str, reference: str, unit: Unit = "words") -> float:
    return float(normalize(prediction, unit) == normalize(reference, unit))


def token_f1(prediction: str, reference: str, unit: Unit = "words") -> float:
    """F1 of the overlapping tokens (a bag, SQuAD-style); characters for Japanese."""
    p, r = tokens(prediction, unit), tokens(reference, unit)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    return f1(common / len(p), common / len(r))


def f1(precision: float, recall: float) -> float:
    """The harmonic mean of precision and recall; 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall != 0 else 0.0


class _Tokenizer:
    """rouge-score's tokenizer interface over our token split (its default drops non-ASCII text)."""

    def __init__(self, unit: Unit):
        self.unit = unit

    def tokenize(self, text: str) -> list[str]:
        return tokens(text, self.unit)


def rouge_l(predictions: Sequence[str], references: Sequence[str], unit: Unit = "words") -> float:
    """Mean ROUGE-L F-measure (rouge-score, the Google implementation of ROUGE-1.5.5's LCS)."""
    from rouge_score.rouge_scorer import RougeScorer  # optional extra: slm[eval]

    scorer = RougeScorer(["rougeL"], tokenizer=_Tokenizer(unit))
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return sum(scores) / max(len(scores), 1)


def bleu(predictions: Sequence[str], references: Sequence[str], unit: Unit = "words") -> float:
    """Corpus BLEU (sacrebleu, 0-100): its 13a tokenizer for words, its character tokenizer for Japanese."""
    import sacrebleu  # optional extra: slm[eval]

    return sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize="char" if unit == "chars" else "13a").score


def distinct_n(outputs: Sequence[str], n: int, unit: Unit = "words") -> float:
    """Unique n-grams / all n-grams over the outputs (1.0: no repetition at all)."""
    grams = [tuple(t[i : i + n]) for t in (tokens(o, unit) for o in outputs) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def longest_repeated_ngram(text: str, unit: Unit = "words") -> int:
    """The length of the longest n-gram that occurs twice (overlaps allowed) in one text."""
    t = tokens(text, unit)
    lo, hi = 0, max(len(t) - 1, 0)
    while lo < hi:  # a repeat of length n implies one of every shorter length: binary search
        mid = (lo + hi + 1) // 2
        seen, found = set(), False
        for i in range(len(t) - mid + 1):
            gram = tuple(t[i : i + mid])
            if gram in seen:
                found = True
                break
            seen.add(gram)
        lo, hi = (mid, hi) if found else (lo, mid - 1)
    return lo


def degeneration(outputs: Sequence[str], finished: Sequence[bool] | None = None, unit: Unit = "words") -> dict:
    """distinct-1/2, the longest repeated n-gram (mean and max over answers), and the share of answers
    that never stopped (ran into the token limit), when `finished` says which ended on their own."""
    repeats = [longest_repeated_ngram(o, unit) for o in outputs]
    report = {"distinct_1": distinct_n(outputs, 1, unit), "distinct_2": distinct_n(outputs, 2, unit),
              "longest_repeat_mean": sum(repeats) / max(len(repeats), 1), "longest_repeat_max": max(repeats, default=0)}
    if finished is not None:
        report["never_stopped"] = sum(not f for f in finished) / max(len(finished), 1)
    return report


def free_text_report(predictions: Sequence[str], references: Sequence[str], finished: Sequence[bool] | None = None,
                     unit: Unit = "words") -> dict:
    """Every free-text metric of a set of answers against their references."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    n = max(len(predictions), 1)
    return {"answers": len(predictions),
            "exact_match": sum(exact_match(p, r, unit) for p, r in zip(predictions, references)) / n,
            "token_f1": sum(token_f1(p, r, unit) for p, r in zip(predictions, references)) / n,
            "rouge_l": rouge_l(predictions, references, unit), "bleu": bleu(predictions, references, unit),
            **degeneration(predictions, finished, unit)}


# ------------------------------------------------------------------ JMED-LLM task metrics

# Cohen's kappa weights of the choice tasks (None: unweighted; linear for the ordinal scales of
# crade and jcsts), and the NER tasks, scored by F1 over sets of entity strings.
JMED_CHOICE_TASKS = {"jmmlu_med": None, "crade": "linear", "rrtnm": None, "smdis": None, "jcsts": "linear"}
JMED_NER_TASKS = ("mrner_disease", "mrner_medicine", "nrner")
NO_LETTER = "None"  # the label of an answer without a readable option letter (sorts after "F")


def first_letter(output: str, letters: str = "ABCDEF") -> str:
    """The first character of `output` that is one of `letters` (the published evaluator's rule)."""
    for char in output or "":
        if char in letters:
            return char
    return NO_LETTER


def standalone_letter(output: str, letters: str) -> str:
    """The first of `letters` not inside a word (corrected mode)."""
    match = re.search(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", output or "") if letters else None
    return match.group(1) if match else NO_LETTER


def parse_list(output: str) -> list:
    """`output` as a Python list literal, else [] (ast.literal_eval: the text is never run)."""
    try:
        value = ast.literal_eval((output or "").strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return []
    return value if isinstance(value, list) else []


def cohen_kappa(gold: Sequence[str], pred: Sequence[str], weights: str | None) -> float:
    """Cohen's kappa over the sorted union of labels (as scikit-learn computes it); `weights` None
    or "linear". NaN when chance agreement is already perfect (one label throughout)."""
    labels = sorted(set(gold) | set(pred))
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)
    confusion = np.zeros((n, n))
    for g, p in zip(gold, pred):
        confusion[index[g], index[p]] += 1
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    if weights is None:
        w = 1 - np.eye(n)
    else:
        w = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    denominator = (w * expected).sum()
    return float("nan") if denominator == 0 else float(1 - (w * confusion).sum() / denominator)


def exact_f1(gold: Sequence[list], pred: Sequence[list]) -> float:
    """Mean F1 per document of the predicted set of strings against the gold set (precision 0
    for an empty prediction)."""
    total = 0.0
    for a, p in zip(gold, pred):
        a, p = set(a), set(p)
        hit = len(a & p)
        total += f1(hit / len(p) if p else 0.0, hit / len(a) if a else 0.0)
    return total / len(gold)
