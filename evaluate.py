"""Benchmarks (report §2.5).

    python evaluate.py score igakuqa --data IgakuQA/ --predictions preds.jsonl [more.jsonl ...] [--out DIR]

`score` needs no model: it scores a predictions file in the published format
({"problem_id", "prediction"} per line), so results of API models or other
toolkits go through the same official rules. Generation with our checkpoints,
JMED-LLM and checkpoint sweeps are the next steps of this CLI.
"""

import argparse
import json
import sys
from pathlib import Path

from slm.eval import igakuqa


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a predictions file by the official rules")
    benchmarks = score.add_subparsers(dest="benchmark", required=True)
    igaku = benchmarks.add_parser("igakuqa")
    igaku.add_argument("--data", required=True, help="the IgakuQA folder (data/<year>/<exam>-<block>.jsonl)")
    igaku.add_argument("--predictions", nargs="+", required=True)
    igaku.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here")
    args = p.parse_args(argv)
    try:
        score_igakuqa(args.data, args.predictions, args.out)
    except (igakuqa.IgakuQAError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
