"""The report's experiment at CPU scale, on data you point to: pretrain on a raw Japanese corpus,
instruction-tune on JMED-LLM's training pools split leak-free, evaluate base and instruct on all
eight JMED-LLM tasks, and write one results table.

    python bench/jmed_experiment.py --corpus ../aozora --corpus-encoding cp932 --corpus-format aozora \\
        --jmed JMED-LLM/datasets --out runs/experiment

Each step is the library's own command line, its output and log under --out (logs/<step>.log);
a step whose output is complete is skipped, so a rerun goes on where a stopped one ended:
1. convert: `slm.finetune.converters --format jmed-llm`, document-level split (and, for the
   comparison only, the report's row-level split, which leaks);
2. tokenizer: `tokenizer.train` on the corpus (its own encoding and format) and the training
   split's text (UTF-8 JSONL);
3. prepare: `slm.data.prepare` (experiment/data.yaml, the evaluation sets decontaminated);
4. pretrain: `train.py` (experiment/pretrain.yaml);
5. finetune: `finetune.py` (experiment/finetune.yaml: SMDIS balanced, checkpoints chosen by
   each task's metric on a stratified selection split);
6. evaluate: `evaluate.py jmed-llm` for the base model and the instruction-tuned one, choice
   tasks ranked by log-likelihood of the option letters (a 7M-parameter model's free text says
   little), NER tasks generated;
7. results.md / results.json: per task and model the metric (kappa, NER partial F1) with a 95%
   bootstrap interval, accuracy, the evaluation and training label distributions, the chance
   levels, and the learning curve of the selection split over fine-tuning.

The configs hold every hyperparameter; this script sets only paths. --pretrain-steps and
--finetune-steps override the steps; --variant runs another fine-tuning config on the same
base (experiment/finetune-<variant>.yaml), for a learning curve against steps and data.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm import jmed, runs  # noqa: E402
from slm.metrics import parse_list  # noqa: E402
from slm.eval import jmed_llm  # noqa: E402

HERE = Path(__file__).resolve().parent / "experiment"
TASKS = list(jmed_llm.TASKS)
BOOTSTRAP = 2000  # resamples of each task's rows for the 95% intervals
REFERENCE_ROWS = (250, 500, 1000, 2000, 4000, 8000)  # training rows of the SMDIS reference's data curve


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", required=True, help="raw Japanese text: files or folders")
    p.add_argument("--corpus-encoding", default="utf-8", help="cp932 for Aozora Bunko")
    p.add_argument("--corpus-format", default="auto", choices=["auto", "text", "jsonl", "aozora"])
    p.add_argument("--jmed", required=True, help="JMED-LLM's datasets/ folder (evaluation CSVs, and all/ the pools)")
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--pretrain-steps", type=int)
    p.add_argument("--finetune-steps", type=int)
    p.add_argument("--variant", default="", help="a fine-tuning variant: experiment/finetune-<variant>.yaml, run in "
                                                 "<out>/finetune-<variant>, results-<variant>.md (the same base)")
    p.add_argument("--ner-max-new-tokens", type=int, default=64)
    return p.parse_args(argv)


def tuned(args: argparse.Namespace) -> str:
    """The fine-tuning run's (and config's) name: finetune, or finetune-<variant>."""
    return f"finetune-{args.variant}" if args.variant else "finetune"


def instruct(args: argparse.Namespace) -> str:
    return f"instruct-{args.variant}" if args.variant else "instruct"


def step(name: str, out: Path, done: bool, command: list[str]) -> None:
    """Run one of the library's commands (logged under out/logs), unless its output is complete."""
    if done:
        print(f"[{name}] done already, skipped", flush=True)
        return
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {' '.join(command)}", flush=True)
    start = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        code = subprocess.call(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    print(f"[{name}] exit {code} after {time.time() - start:.0f} s (log: {log})", flush=True)
    if code != 0:
        sys.exit(f"{name} failed: see {log}")


def write_config(template: str, out: Path, fields: dict) -> Path:
    """The committed config with this run's paths set, saved beside the run."""
    config = yaml.safe_load((HERE / template).read_text(encoding="utf-8"))
    for key, value in fields.items():
        target = config
        *parents, last = key.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    path = out / "configs" / template
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def training_text(conversations: Path, text: Path) -> None:
    """The training split's prompts and answers as UTF-8 JSONL {"text"} for the tokenizer."""
    with open(conversations, encoding="utf-8") as f, open(text, "w", encoding="utf-8") as g:
        for line in f:
            for message in json.loads(line)["messages"]:
                g.write(json.dumps({"text": message["content"]}, ensure_ascii=False) + "\n")


def run_steps(args: argparse.Namespace, out: Path) -> None:
    py = sys.executable
    jmed_dir = Path(args.jmed).resolve()
    pools = sorted(str(p) for p in (jmed_dir / "all").glob("*.csv"))
    evals = sorted(str(p) for p in jmed_dir.glob("*.csv"))
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    train = data / "jmed-train.jsonl"
    for level, target in (("document", train), ("row", data / "jmed-train-rowlevel.jsonl")):
        step(f"convert-{level}", out, target.is_file(),
             [py, "-m", "slm.finetune.converters", "--format", "jmed-llm", "--input", *pools, "--exclude", *evals,
              "--exclude-level", level, "--out", str(target)])
    text = data / "jmed-train-text.jsonl"
    if not text.is_file():
        training_text(train, text)
    corpus = [f"{Path(c).resolve()}:encoding={args.corpus_encoding},format={args.corpus_format}" for c in args.corpus]
    tokenizer = out / "tokenizer"
    step("tokenizer", out, (tokenizer / "tokenizer.model").is_file(),
         [py, "-m", "tokenizer.train", "--input", *corpus, f"{text}:format=jsonl", "--vocab-size", str(args.vocab_size),
          "--out", str(tokenizer)])
    prepared = data / "pretrain"
    config = write_config("data.yaml", out, {"out": str(prepared), "tokenizer": str(tokenizer),
                                             "sources.0.paths": [str(Path(c).resolve()) for c in args.corpus],
                                             "sources.0.format": args.corpus_format,
                                             "sources.0.encoding": args.corpus_encoding,
                                             "decontamination.benchmarks": evals})
    step("prepare", out, (prepared / "report.json").is_file(), [py, "-m", "slm.data.prepare", "--config", str(config)])
    pretrain = out / "pretrain"
    fields = {"out": str(pretrain), "data": str(prepared)}
    if args.pretrain_steps:
        fields["steps"] = args.pretrain_steps
    config = write_config("pretrain.yaml", out, fields)
    steps = yaml.safe_load(config.read_text())["steps"]
    step("pretrain", out, (runs.step_dir(runs.checkpoints_dir(pretrain), steps)).is_dir(),
         [py, "train.py", "--config", str(config), *(["--resume"] if pretrain.exists() else [])])
    finetune = out / tuned(args)
    fields = {"out": str(finetune), "init_from": str(runs.step_dir(runs.checkpoints_dir(pretrain), steps)),
              "train_files": [str(train)]}
    if args.finetune_steps:
        fields["steps"] = args.finetune_steps
    config = write_config(f"{tuned(args)}.yaml", out, fields)
    steps = yaml.safe_load(config.read_text())["steps"]
    step(tuned(args), out, (runs.step_dir(runs.checkpoints_dir(finetune), steps)).is_dir(),
         [py, "finetune.py", "--config", str(config), *(["--resume"] if finetune.exists() else [])])
    for name, model in (("base", pretrain), (instruct(args), finetune)):
        target = out / "eval" / name
        step(f"evaluate-{name}", out, (target / "metrics.json").is_file(),
             [py, "evaluate.py", "jmed-llm", "--model", str(model), "--data", str(jmed_dir), "--method", "loglik",
              "--ner-max-new-tokens", str(args.ner_max_new_tokens), "--out", str(target)])


# ------------------------------------------------------------------ the results table


def headline(task: str, scored: dict) -> float:
    return scored["kappa"] if task in jmed_llm.CHOICE_TASKS else scored["partial_f1"]


def interval(task: str, rows: list[dict], outputs: list[str], seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the task's headline metric, rows resampled."""
    rng = random.Random(seed)
    values = []
    for _ in range(BOOTSTRAP):
        picks = [rng.randrange(len(rows)) for _ in rows]
        values.append(headline(task, jmed_llm.score_task(task, [rows[i] for i in picks], [outputs[i] for i in picks])))
    values.sort()
    return values[int(0.025 * BOOTSTRAP)], values[int(0.975 * BOOTSTRAP) - 1]


def distribution(labels) -> str:
    counts = Counter(labels)
    total = sum(counts.values())
    return " ".join(f"{k} {v / total:.0%}" for k, v in sorted(counts.items())) if total else "-"


_ITEM = re.compile(r"'([^']*)'")


def ner_diagnosis(rows: list[dict], outputs: list[str]) -> dict:
    """Why NER outputs fail to parse, measured on the unclosed lists too: the share that start a list,
    whose first item is a span of the record (copied), whose first item is a gold entity, and that
    repeat one item (a loop that never reaches "]")."""
    started = copied = gold = looped = 0
    for row, output in zip(rows, outputs):
        items = _ITEM.findall(output)
        started += output.lstrip().startswith("[")
        if items and items[0]:
            copied += items[0] in row["question"]
            gold += items[0] in parse_list(row["answer"])
        looped += len(items) >= 4 and len(set(items[1:])) == 1
    n = max(len(rows), 1)
    return {"list_started": started / n, "first_item_copied": copied / n, "first_item_gold": gold / n,
            "looped": looped / n}


def task_results(jmed_dir: Path, eval_dir: Path) -> dict:
    """Per task: the metric, its interval, accuracy, unparsed outputs, what the model answered."""
    outputs: dict[str, dict[int, str]] = {}
    for line in (eval_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        outputs.setdefault(record["task"], {})[record["index"]] = record["output"]
    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    results = {}
    for task in TASKS:
        rows = jmed_llm.load_task(jmed_dir, task)
        answered = [outputs.get(task, {}).get(i, "") for i in range(len(rows))]
        scored = jmed_llm.score_task(task, rows, answered)
        low, high = interval(task, rows, answered)
        results[task] = {"metric": headline(task, scored), "low": low, "high": high,
                         "accuracy": scored.get("accuracy", scored.get("exact_f1")),
                         "unparsed": len(metrics.get(task, {}).get("unparsed", [])),
                         "empty": len(metrics.get(task, {}).get("empty", [])),
                         "answers": distribution(scored["predictions"]) if task in jmed_llm.CHOICE_TASKS else "-",
                         **({} if task in jmed_llm.CHOICE_TASKS else {"ner": ner_diagnosis(rows, answered)})}
    return results


def train_labels(run: Path) -> dict[str, str]:
    """Each task's label distribution in the fine-tuning mixture (what the model was trained on)."""
    mixture = json.loads((run / "mixture.json").read_text(encoding="utf-8"))
    after = mixture.get("after", mixture)
    found = {}
    for task, labels in after.items():
        if isinstance(labels, dict):
            rows = sum(labels.values())
            found[task] = f"{rows}: " + distribution(Counter({k: v for k, v in labels.items()}))
    return found


def learning_curve(run: Path) -> list[dict]:
    """The selection split's score at every judged fine-tuning checkpoint (metrics.jsonl keeps them
    all, retention or not), oldest first."""
    curve = []
    for record in runs.read_log(run, kind="select"):
        curve.append({"step": record["step"], record["metric"]: round(record[record["metric"]], 4),
                      **({"per_task": {k: round(v, 4) for k, v in record["per_task"].items()}}
                         if "per_task" in record else {})})
    return curve


def reference_smdis(out: Path, jmed_dir: Path, seed: int = 0) -> dict:
    """What the training rows alone can teach about SMDIS: a character 1-3-gram TF-IDF logistic
    regression (labels weighted to balance) fitted on the leak-free SMDIS rows and scored on the
    evaluation set with the same kappa and interval. It says whether the split holds the signal a
    model failed to learn, and how far a small model is from it; fitted again on random subsets
    (REFERENCE_ROWS), it says how much data that signal needs."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # optional dependency: scikit-learn (dev extra)
    from sklearn.linear_model import LogisticRegression  # optional dependency: scikit-learn (dev extra)

    train = [json.loads(line) for line in (out / "data" / "jmed-train.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r for r in train if r["task"] == "smdis"]
    rows = jmed_llm.load_task(jmed_dir, "smdis")
    questions = [jmed.conversation(r)[1]["content"] for r in rows]

    def fitted(subset: list[dict]) -> list[str]:
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
        features = vectorizer.fit_transform([r["messages"][1]["content"] for r in subset])
        classifier = LogisticRegression(max_iter=2000, class_weight="balanced")
        return list(classifier.fit(features, [r["label"] for r in subset]).predict(vectorizer.transform(questions)))

    answers = fitted(train)
    scored = jmed_llm.score_task("smdis", rows, answers)
    low, high = interval("smdis", rows, answers, seed)
    rng = random.Random(seed)
    curve = [{"rows": n, "kappa": round(jmed_llm.score_task("smdis", rows, fitted(rng.sample(train, n)))["kappa"], 3)}
             for n in REFERENCE_ROWS if n < len(train)]
    return {"rows": len(train), "kappa": scored["kappa"], "low": low, "high": high, "accuracy": scored["accuracy"],
            "by_rows": curve + [{"rows": len(train), "kappa": round(scored["kappa"], 3)}]}


def results(args: argparse.Namespace, out: Path) -> str:
    jmed_dir = Path(args.jmed)
    models = {"base": task_results(jmed_dir, out / "eval" / "base"),
              "instruct": task_results(jmed_dir, out / "eval" / instruct(args))}
    trained = train_labels(out / tuned(args))
    lines = ["| task | metric | n | eval labels | trained on | chance | base | base 95% CI | instruct | "
             "instruct 95% CI | instruct accuracy | instruct answers | unparsed (base / instruct) |",
             "|" + "---|" * 13]
    for task in TASKS:
        rows = jmed_llm.load_task(jmed_dir, task)
        choice = task in jmed_llm.CHOICE_TASKS
        gold = [row["answer"] for row in rows] if choice else []
        n_options = len(jmed.option_letters(rows[0])) if choice else 0
        chance = (f"kappa 0; acc 1/{n_options} = {1 / n_options:.2f}, majority "
                  f"{max(Counter(gold).values()) / len(gold):.2f}") if choice else "F1 0 (no trivial answer)"
        b, i = models["base"][task], models["instruct"][task]
        lines.append(f"| {task} | {'kappa' if choice else 'partial F1'} | {len(rows)} | {distribution(gold)} | "
                     f"{trained.get(task, 'none')} | {chance} | {b['metric']:.3f} | [{b['low']:.3f}, {b['high']:.3f}] | "
                     f"{i['metric']:.3f} | [{i['low']:.3f}, {i['high']:.3f}] | {i['accuracy']:.2f} | {i['answers']} | "
                     f"{b['unparsed']} / {i['unparsed']} |")
    ner = ["| task | model | parsed | list started | first item copied from the text | first item a gold entity | "
           "one item repeated (loop) |", "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        for name, model in models.items():
            if "ner" in model[task]:
                d, n = model[task]["ner"], len(jmed_llm.load_task(jmed_dir, task))
                ner.append(f"| {task} | {name} | {1 - model[task]['unparsed'] / n:.0%} | {d['list_started']:.0%} | "
                           f"{d['first_item_copied']:.0%} | {d['first_item_gold']:.0%} | {d['looped']:.0%} |")
    curve = learning_curve(out / tuned(args))
    reference = reference_smdis(out, jmed_dir)
    by_rows = ", ".join(f"{point['rows']:,}: {point['kappa']:.3f}" for point in reference["by_rows"])
    text = ["# JMED-LLM at CPU scale: base and instruct", "", *lines, "",
            f"Reference on SMDIS, no language model: a character n-gram logistic regression fitted on the same "
            f"{reference['rows']:,} leak-free SMDIS training rows scores kappa {reference['kappa']:.3f} "
            f"[{reference['low']:.3f}, {reference['high']:.3f}], accuracy {reference['accuracy']:.2f}; fitted on random "
            f"subsets of those rows (as imbalanced as the pool), kappa by training rows: {by_rows}.", "",
            "## What the NER outputs hold (unparsed ones too)", "", *ner, "",
            "## Fine-tuning's selection split over the steps (the checkpoint choice's learning curve)", "",
            "```", *(json.dumps(point, ensure_ascii=False) for point in curve), "```", ""]
    suffix = f"-{args.variant}" if args.variant else ""
    (out / f"results{suffix}.json").write_text(json.dumps({"models": models, "trained_on": trained, "curve": curve,
                                                  "reference_smdis": reference},
                                                 ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / f"results{suffix}.md").write_text("\n".join(text), encoding="utf-8")
    return "\n".join(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    run_steps(args, out)
    print(results(args, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
