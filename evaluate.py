"""Benchmarks (report §2.5).

    python evaluate.py score igakuqa --data IgakuQA/ --predictions preds.jsonl [more.jsonl ...] [--out DIR]
    python evaluate.py score jmed-llm --data JMED-LLM/datasets --predictions outputs.jsonl [--mode upstream|corrected]
    python evaluate.py perplexity --model runs/pretrain/x/checkpoints/step-0000300 --data heldout/*.txt

`score` needs no model: it scores a predictions file in the published format
({"problem_id", "prediction"} per line for IgakuQA, {"task", "index", "output"} for
JMED-LLM), so results of API models or other
toolkits go through the same official rules. Generation with our checkpoints,
JMED-LLM and checkpoint sweeps are the next steps of this CLI.
"""

import argparse
import json
import sys
from pathlib import Path

from slm.eval import igakuqa, jmed_llm
from tokenizer.corpus import CorpusError


def score_igakuqa(data: str, predictions: list[str], out: str | None) -> dict:
    questions = igakuqa.load_questions(data)
    preds: dict[str, str] = {}
    for path in predictions:
        preds.update(igakuqa.load_predictions(path, questions))
    result = igakuqa.score(questions, preds)
    print(igakuqa.table(result), end="")
    for year, y in result["years"].items():
        if y["missing"]:
            print(f"{year}: {len(y['missing'])} questions without a prediction (counted wrong): {y['missing'][:10]}")
    if out:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "predictions.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result["questions"]), encoding="utf-8")
        (out_dir / "metrics.json").write_text(json.dumps(result["years"], indent=2) + "\n", encoding="utf-8")
        (out_dir / "table.md").write_text(igakuqa.table(result), encoding="utf-8")
    return result


def score_jmed_llm(data: str, predictions: str, mode: str, out: str | None) -> dict:
    outputs = jmed_llm.load_predictions(predictions, data)
    results = {}
    for task in jmed_llm.TASKS:
        if task in outputs:
            results[task] = jmed_llm.score_task(task, jmed_llm.load_task(data, task), outputs[task], mode)
            if outputs.get(task + ":missing"):
                print(f"{task}: rows without a prediction (scored as empty output): {outputs[task + ':missing'][:10]}")
    print(jmed_llm.table(results), end="")
    if out:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics = {t: {k: v for k, v in r.items() if k != "predictions"} for t, r in results.items()}
        (out_dir / "metrics.json").write_text(json.dumps({"mode": mode, **metrics}, indent=2) + "\n", encoding="utf-8")
        (out_dir / "predictions.jsonl").write_text("".join(
            json.dumps({"task": t, "index": i, "parsed": p}, ensure_ascii=False) + "\n"
            for t, r in results.items() for i, p in enumerate(r["predictions"])), encoding="utf-8")
        (out_dir / "table.md").write_text(jmed_llm.table(results), encoding="utf-8")
    return results


def held_out_perplexity(model_dir: str, data: list[str]) -> dict:
    from slm.data.readers import ReadErrors, SourceConfig, read_documents
    from slm.eval.perplexity import perplexity
    from slm.model import SLM
    from tokenizer import JapaneseTokenizer

    model, tok = SLM.from_pretrained(model_dir), JapaneseTokenizer.load(Path(model_dir) / "tokenizer")
    errors = ReadErrors()
    docs = (d.text for d in read_documents(SourceConfig(name="heldout", paths=data), errors))
    result = perplexity(model, tok, docs)
    print(f"{result['tokens']:,} tokens, {result['characters']:,} characters: perplexity {result['perplexity']:.2f}, "
          f"{result['bits_per_character']:.3f} bits/character; {errors.total} unreadable lines skipped")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a predictions file by the official rules")
    benchmarks = score.add_subparsers(dest="benchmark", required=True)
    igaku = benchmarks.add_parser("igakuqa")
    igaku.add_argument("--data", required=True, help="the IgakuQA folder (data/<year>/<exam>-<block>.jsonl)")
    igaku.add_argument("--predictions", nargs="+", required=True)
    igaku.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here")
    jmed = benchmarks.add_parser("jmed-llm")
    jmed.add_argument("--data", required=True, help="the JMED-LLM datasets folder (<task>.csv)")
    jmed.add_argument("--predictions", required=True, help='JSONL of {"task", "index", "output"}')
    jmed.add_argument("--mode", choices=["upstream", "corrected"], default="upstream")
    jmed.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here")
    ppl = commands.add_parser("perplexity", help="perplexity and bits per character on held-out text")
    ppl.add_argument("--model", required=True, help="a checkpoint folder with its tokenizer/")
    ppl.add_argument("--data", nargs="+", required=True, help="text files (documents separated by blank lines) or JSONL")
    args = p.parse_args(argv)
    try:
        if args.command == "perplexity":
            held_out_perplexity(args.model, args.data)
        elif args.benchmark == "igakuqa":
            score_igakuqa(args.data, args.predictions, args.out)
        else:
            score_jmed_llm(args.data, args.predictions, args.mode, args.out)
    except (igakuqa.IgakuQAError, jmed_llm.JmedLLMError, CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
