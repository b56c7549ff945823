"""Synthetic medical textbooks (report §2.1.2): an LM writes about diseases, drugs and examinations.

The report had instruction-tuned models write textbook-style texts on tens of
thousands of diseases and drugs, and exercises like the national medical and
pharmacists' licensing examinations (several per topic). Here each kind of topic
has a list (`topics/<kind>s.txt`, one topic a line, written for this project)
and prompt templates in Japanese; every topic is put to every template of its
kind, `samples` times with different seeds.

Outputs are deduplicated (exact match after normalising widths and removing whitespace),
at most `per_topic_cap` are kept per topic, and empty ones are dropped; each is
counted in `stats`. The result is JSONL with the text and its provenance
(`meta`: synthetic, topic, kind, template, model), which the corpus pipeline
reads as the "synthetic_textbooks" source, so the mixture decides its share
(the report warns that too much synthetic text degrades a model).

    python -m slm.data.synth --model runs/elyza-8b --out data/synthetic/textbooks.jsonl --per-topic 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import count, islice
from pathlib import Path

from tokenizer.progress import progress as progress_bar

from slm.checkpoint import CheckpointError, atomic_write
from slm.config import ConfigError
from slm.data.document import Document
from slm.lm import LocalLM, load_lm
from tokenizer.corpus import CorpusError

SOURCE = "synthetic_textbooks"
TOPICS_DIR = Path(__file__).resolve().parent / "topics"
TOPIC_FILES = {"disease": "diseases.txt", "drug": "drugs.txt", "examination": "examinations.txt"}

# kind -> template name -> prompt; {topic} is replaced by the topic. Written for instruction-tuned models.
TEMPLATES: dict[str, dict[str, str]] = {
    "disease": {
        "textbook": "医学生向けの教科書の一節として、「{topic}」について日本語で解説してください。"
                    "定義、原因と病態、主な症状と身体所見、診断に用いる検査、治療、予後の順に、"
                    "正確で分かりやすい文章で書いてください。",
        "exercise": "日本の医師国家試験に似た形式で、「{topic}」に関する五肢択一の問題を1問作ってください。"
                    "症例文または問題文、選択肢a〜e、正解、そして各選択肢が正しい理由または誤りである理由を"
                    "日本語で書いてください。",
    },
    "drug": {
        "textbook": "薬学生向けの教科書の一節として、医薬品「{topic}」について日本語で解説してください。"
                    "薬効分類、作用機序、主な適応、用法・用量の注意点、主な副作用、禁忌と相互作用を、"
                    "正確で分かりやすい文章で書いてください。",
        "exercise": "日本の薬剤師国家試験に似た形式で、医薬品「{topic}」に関する五肢択一の問題を1問作ってください。"
                    "問題文、選択肢1〜5、正解、そして各選択肢の解説を日本語で書いてください。",
    },
    "examination": {
        "textbook": "臨床検査の教科書の一節として、「{topic}」について日本語で解説してください。"
                    "検査の目的、原理と方法、基準値または正常所見、異常となる主な疾患や病態、"
                    "検査を行う際の注意点を、正確で分かりやすい文章で書いてください。",
    },
}


def load_topics(path: str | Path) -> list[str]:
    """One topic a line; blank lines and lines starting with # are skipped, repeats kept once."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    topics = list(dict.fromkeys(s for s in map(str.strip, lines) if s and not s.startswith("#")))
    if not topics:
        raise ValueError(f"{path}: no topics")
    return topics


def default_topics(kinds: Iterable[str] = TOPIC_FILES) -> dict[str, list[str]]:
    """The shipped topic lists for the given kinds."""
    unknown = sorted(set(kinds) - set(TOPIC_FILES))
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; kinds: {sorted(TOPIC_FILES)}")
    return {kind: load_topics(TOPICS_DIR / TOPIC_FILES[kind]) for kind in kinds}


def normalise(text: str) -> str:
    """The form two outputs must share to count as duplicates: NFKC (widths), whitespace removed
    (Japanese does not rely on it, and LMs vary it)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def generate_textbooks(lm: LocalLM, topics: Mapping[str, Sequence[str]],
                       templates: Mapping[str, Mapping[str, str]] = TEMPLATES, per_topic_cap: int = 5,
                       samples: int = 1, seed: int = 0, max_new_tokens: int = 1024, temperature: float = 0.7,
                       top_p: float = 0.9, batch_size: int = 8, stats: Counter | None = None,
                       progress: bool = False) -> Iterator[Document]:
    """Documents written by `lm`: each topic of each kind put to each of the kind's templates, `samples` times.

    Prompts are ordered sample by sample within a topic, so a cap below the number of
    prompts keeps a mix of templates; prompts of a topic that is already full are not
    generated. `stats` (if given) counts prompts generated and outputs kept, empty,
    duplicate or over the cap. Batch k is sampled with seed + k: the same arguments
    give the same documents.
    """
    if per_topic_cap <= 0 or samples <= 0 or batch_size <= 0:
        raise ValueError(f"per_topic_cap, samples and batch_size must be positive, got {per_topic_cap}, {samples}, {batch_size}")
    missing = sorted(set(topics) - set(templates))
    if missing:
        raise ValueError(f"no templates for kind(s) {missing}; templates exist for {sorted(templates)}")
    for kind in topics:
        for name, template in templates[kind].items():
            if "{topic}" not in template:
                raise ValueError(f"template {kind}/{name} must contain {{topic}}")
    work = [(kind, topic, name) for kind, kind_topics in topics.items() for topic in kind_topics
            for _ in range(samples) for name in templates[kind]]
    stats = Counter() if stats is None else stats
    kept: Counter = Counter()
    seen: set[bytes] = set()
    pending = iter(work)
    with progress_bar(total=len(work), desc="synthetic textbooks", unit="prompt", enabled=progress) as bar:
        for batch_index in count():
            batch = []
            for item in pending:
                bar.update(1)
                if kept[item[:2]] < per_topic_cap:
                    batch.append(item)
                    if len(batch) == batch_size:
                        break
            if not batch:
                return
            prompts = [templates[kind][name].replace("{topic}", topic) for kind, topic, name in batch]
            outputs = lm.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  seed=seed + batch_index, batch_size=batch_size)
            stats["prompts"] += len(batch)
            for (kind, topic, name), completion in zip(batch, outputs):
                text = completion.text.strip()
                key = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()
                if not text:
                    stats["empty"] += 1
                elif key in seen:
                    stats["duplicate"] += 1
                elif kept[kind, topic] >= per_topic_cap:
                    stats["over_cap"] += 1
                else:
                    seen.add(key)
                    kept[kind, topic] += 1
                    stats["kept"] += 1
                    meta = {"synthetic": True, "topic": topic, "kind": kind, "template": name, "model": lm.name}
                    # line: where write_jsonl puts it when the documents are written in this order
                    yield Document(text, SOURCE, f"synthetic:{lm.name}", stats["kept"], meta)


def write_jsonl(docs: Iterable[Document], path: str | Path) -> int:
    """Write {"text": ..., **meta} a line (the form slm.data.readers reads back); returns the count.

    The file appears only when complete (written under a temporary name, then renamed),
    so an interrupted run never leaves a partial corpus file for the pipeline to read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0

    def write(tmp: Path) -> None:
        nonlocal written
        with open(tmp, "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps({"text": doc.text, **doc.meta}, ensure_ascii=False) + "\n")
                written += 1

    atomic_write(path, write)
    return written


def _write_textbooks(args) -> tuple[int, Counter]:
    topics = {kind: list(islice(ts, args.max_topics)) for kind, ts in default_topics(args.kinds).items()}
    lm = load_lm(args.model, device=args.device)
    stats: Counter = Counter()
    docs = generate_textbooks(lm, topics, per_topic_cap=args.per_topic, samples=args.samples, seed=args.seed,
                              max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              batch_size=args.batch_size, stats=stats, progress=True)
    return write_jsonl(docs, args.out), stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local model folder (ours or a transformers causal LM)")
    parser.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--kinds", nargs="+", default=list(TOPIC_FILES), choices=list(TOPIC_FILES))
    parser.add_argument("--per-topic", type=int, default=5, help="documents kept per topic at most")
    parser.add_argument("--samples", type=int, default=1, help="generations per topic and template")
    parser.add_argument("--max-topics", type=int, default=None, help="only the first N topics of each kind (a trial run)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    try:
        n, stats = _write_textbooks(args)
    except (CheckpointError, ConfigError, CorpusError, OSError) as e:  # the model folder, the topics, the output
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} documents to {args.out} ({stats['prompts']} prompts; dropped {stats['empty']} empty, "
          f"{stats['duplicate']} duplicate, {stats['over_cap']} over the per-topic cap)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
