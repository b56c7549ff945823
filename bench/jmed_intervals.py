"""95% bootstrap intervals of the headline metric (kappa, NER partial F1) per task of evaluate.py
jmed-llm result folders, as bench/jmed_experiment.py computes them for its table; for evaluations
run beside the experiment (another decoding, another checkpoint).

    python bench/jmed_intervals.py --data JMED-LLM/datasets runs/experiment/eval/instruct-ner-penalty-1.1 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jmed_experiment import headline, interval  # noqa: E402
from slm.eval import jmed_llm  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="JMED-LLM's datasets/ folder the results were computed on")
    p.add_argument("results", nargs="+", help="evaluate.py jmed-llm --out folders (predictions.jsonl, metrics.json)")
    args = p.parse_args(argv)
    tasks: dict[str, list[dict]] = {}  # each task's rows read once, whatever the folders
    for folder in map(Path, args.results):
        found = jmed_llm.read_outputs(folder / "predictions.jsonl")
        for task in found.keys() - tasks.keys():
            tasks[task] = jmed_llm.load_task(args.data, task)
        outputs = jmed_llm.align_outputs(folder / "predictions.jsonl", found, tasks)
        settings = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("settings", {})
        print(f"{folder} ({', '.join(f'{k} {v}' for k, v in settings.items())})")
        for task in (t for t in jmed_llm.TASKS if t in found):
            low, high = interval(task, tasks[task], outputs[task])
            print(f"  {task}: {headline(task, jmed_llm.score_task(task, tasks[task], outputs[task])):.3f} "
                  f"[{low:.3f}, {high:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
