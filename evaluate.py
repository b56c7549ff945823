"""Benchmarks (report §2.5): IgakuQA, JMED-LLM, perplexity, checkpoint sweeps, and scoring of
prediction files.

    python evaluate.py igakuqa --model runs/finetune/sft --data IgakuQA/        [--method loglik] [--shots 3]
    python evaluate.py jmed-llm --model runs/finetune/sft --data JMED-LLM/datasets [--mode corrected]
    python evaluate.py perplexity --model runs/pretrain/x --data heldout/*.txt
    python evaluate.py sweep runs/pretrain/x --benchmarks igakuqa perplexity --igakuqa-data IgakuQA/ --heldout h.txt
    python evaluate.py mcqa --benchmark medqa --model M --data test.jsonl --train train.jsonl --shots 5 --select knn --cot
    python evaluate.py qa --model runs/finetune/sft --data heldout.jsonl [--unit chars] [--repetition-penalty 1.3]
    python evaluate.py score igakuqa --data IgakuQA/ --predictions preds.jsonl [more.jsonl ...]
    python evaluate.py score jmed-llm --data JMED-LLM/datasets --predictions outputs.jsonl [--mode corrected]

--model is a checkpoint folder, a run folder (its best checkpoint, else the newest), a LoRA
adapter checkpoint (its base from the run's init_from, or --base), or a transformers model
folder. Base models (without chat.json, written by instruction tuning) read the prompts as
plain text; `--method loglik` ranks the choices by likelihood instead of generating.
Every run writes predictions.jsonl, metrics.json and table.md (--out, default
runs/eval/<run>-<checkpoint>/<benchmark>). `score` needs no model: it reads the published
formats ({"problem_id", "prediction"} per line for IgakuQA, {"task", "index", "output"} for
JMED-LLM; a model run's predictions.jsonl is in that format too).
"""

import argparse
import sys
from functools import partial
from pathlib import Path

from slm.checkpoint import CheckpointError
from slm.eval import igakuqa, jmed_llm, mcqa
from slm.eval.benchmarks import heldout_documents, run_igakuqa, run_jmed_llm, run_mcqa, run_perplexity, run_qa
from slm.eval.harness import write_results
from slm.runs import display_name, resolve_model_dir
from tokenizer.corpus import CorpusError

BENCHMARKS = ("igakuqa", "jmed-llm", "perplexity")


def load_model(args, path):
    import torch

    from slm.lm import load_lm

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    chat = {"auto": None, "yes": True, "no": False}[args.chat]
    return load_lm(path, device=device, dtype=dtype, base=args.base, chat=chat)


def default_out(model: str, benchmark: str) -> Path:
    """runs/eval/<run>-<checkpoint>/<benchmark>: a checkpoint is named with its run."""
    return Path("runs/eval") / display_name(resolve_model_dir(model)) / benchmark


def evaluators(args) -> dict:
    """The benchmarks a sweep runs, each as (model, output folder) -> headline numbers."""
    chosen = {}
    for name in args.benchmarks:
        if name == "igakuqa":
            if not args.igakuqa_data:
                raise SystemExit("error: --igakuqa-data is needed for igakuqa")
            chosen[name] = partial(_igakuqa, args)
        elif name == "jmed-llm":
            if not args.jmed_llm_data:
                raise SystemExit("error: --jmed-llm-data is needed for jmed-llm")
            chosen[name] = partial(_jmed_llm, args)
        else:
            if not args.heldout:
                raise SystemExit("error: --heldout is needed for perplexity")
            docs, skipped = heldout_documents(args.heldout)
            chosen[name] = lambda lm, out, docs=docs, skipped=skipped: run_perplexity(lm, docs, out, skipped, echo=False)
    return chosen


def _igakuqa(args, lm, out, data=None, echo=False):
    return run_igakuqa(lm, data or args.igakuqa_data, out, args.method, args.shots, args.shots_file, args.years,
                       args.loglik_target, args.max_new_tokens or 32, args.batch_size, echo=echo)


def _jmed_llm(args, lm, out, data=None, echo=False):
    return run_jmed_llm(lm, data or args.jmed_llm_data, out, args.tasks, args.method, args.mode,
                        args.max_new_tokens or 512, args.batch_size, echo=echo)


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
        write_results(out, result["questions"], {"overall": result["overall"], "years": result["years"]},
                      igakuqa.table(result))
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
        write_results(out, *jmed_llm.report(results, outputs, mode), jmed_llm.table(results))
    return results


def _model_options(p: argparse.ArgumentParser, method: bool = True) -> None:
    p.add_argument("--base", help="the base checkpoint of a LoRA adapter (default: the run's init_from)")
    p.add_argument("--chat", choices=["auto", "yes", "no"], default="auto",
                   help="read prompts through the chat template (auto: when the checkpoint was instruction-tuned)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto", help="auto: bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch-size", type=int, default=8)
    if method:
        p.add_argument("--method", choices=["generate", "loglik"], default="generate",
                       help="generate greedily, or rank the choices by log-likelihood (base models)")
        p.add_argument("--max-new-tokens", type=int,
                       help="default: 32 for IgakuQA, 512 for JMED-LLM (official), 16 for mcqa (512 with --cot)")


def _model_command(commands, name: str, help: str, data_help: str, many: bool = False, method: bool = True):
    """A subcommand that puts a benchmark to a model: --model, --data, --out and the model options."""
    p = commands.add_parser(name, help=help)
    p.add_argument("--model", required=True)
    p.add_argument("--data", nargs="+" if many else None, required=True, help=data_help)
    p.add_argument("--out")
    _model_options(p, method)
    return p


def _igakuqa_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shots", type=int, default=3, help="few-shot examples (published: 3)")
    p.add_argument("--shots-file", help="default: prompts/prompt.jsonl beside the data")
    p.add_argument("--years", nargs="+", help="default: every year found")
    p.add_argument("--loglik-target", choices=["letter", "text"], default="letter")


def _jmed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", nargs="+", choices=jmed_llm.TASKS, default=list(jmed_llm.TASKS))
    p.add_argument("--mode", choices=["upstream", "corrected"], default="upstream")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)

    igaku = _model_command(commands, "igakuqa", "put IgakuQA to a model",
                           "the IgakuQA folder (data/<year>/<exam>-<block>.jsonl, prompts/)")
    _igakuqa_options(igaku)
    jmed = _model_command(commands, "jmed-llm", "put the JMED-LLM tasks to a model",
                          "the JMED-LLM datasets folder (<task>.csv)")
    _jmed_options(jmed)
    _model_command(commands, "perplexity", "perplexity and bits per character on held-out text",
                   "text files (documents separated by blank lines) or JSONL", many=True, method=False)

    mc = _model_command(commands, "mcqa", "English medical multiple choice: MedQA, MedMCQA, PubMedQA, MMLU",
                        "the test files in the benchmark's published schema", many=True)
    mc.add_argument("--benchmark", choices=mcqa.BENCHMARKS, required=True)
    mc.add_argument("--train", nargs="*", default=[], help="the training split few-shot examples come from")
    mc.add_argument("--shots", type=int, default=0)
    mc.add_argument("--select", choices=["fixed", "knn"], default="fixed", help="the first k, or the k nearest")
    mc.add_argument("--embedder", help="the model whose embeddings choose kNN examples (default: the model itself)")
    mc.add_argument("--cot", action="store_true", help="chain of thought, then 'The answer is X'")
    mc.add_argument("--samples", type=int, default=1, help="self-consistency: sampled chains voting")
    mc.add_argument("--temperature", type=float, default=0.7)
    mc.add_argument("--cop-base", type=int, default=1, help="MedMCQA: cop counts from 1 (original) or 0")

    qa = _model_command(commands, "qa", "free-text answers: exact match, F1, ROUGE-L, BLEU, degeneration",
                        "conversation JSONL; the last assistant turn is the reference", many=True, method=False)
    qa.add_argument("--unit", choices=["words", "chars"], default="words", help="chars for Japanese")
    qa.add_argument("--max-new-tokens", type=int, default=256)
    qa.add_argument("--repetition-penalty", type=float, default=1.0)

    sweep = commands.add_parser("sweep", help="every checkpoint of a run: sweep.csv and sweep.png")
    sweep.add_argument("run", help="a run folder (runs/<name>, with checkpoints/)")
    sweep.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, required=True)
    sweep.add_argument("--igakuqa-data")
    sweep.add_argument("--jmed-llm-data")
    sweep.add_argument("--heldout", nargs="+", help="held-out text for perplexity")
    sweep.add_argument("--out", help="default: <run>/eval")
    sweep.add_argument("--force", action="store_true", help="re-evaluate checkpoints already evaluated")
    _model_options(sweep)
    _igakuqa_options(sweep)
    _jmed_options(sweep)

    score = commands.add_parser("score", help="score a predictions file by the official rules (no model)")
    benchmarks = score.add_subparsers(dest="benchmark", required=True)
    igaku_score = benchmarks.add_parser("igakuqa")
    igaku_score.add_argument("--data", required=True, help="the IgakuQA folder (data/<year>/<exam>-<block>.jsonl)")
    igaku_score.add_argument("--predictions", nargs="+", required=True)
    igaku_score.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here")
    jmed_score = benchmarks.add_parser("jmed-llm")
    jmed_score.add_argument("--data", required=True, help="the JMED-LLM datasets folder (<task>.csv)")
    jmed_score.add_argument("--predictions", required=True, help='JSONL of {"task", "index", "output"}')
    jmed_score.add_argument("--mode", choices=["upstream", "corrected"], default="upstream")
    jmed_score.add_argument("--out", help="write predictions.jsonl, metrics.json and table.md here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "score":
            if args.benchmark == "igakuqa":
                score_igakuqa(args.data, args.predictions, args.out)
            else:
                score_jmed_llm(args.data, args.predictions, args.mode, args.out)
        elif args.command == "sweep":
            from slm.eval.sweep import sweep

            rows = sweep(args.run, evaluators(args), partial(load_model, args), args.out, args.force)
            out = Path(args.out) if args.out else Path(args.run) / "eval"
            print(f"{len(rows)} values from {len({r['checkpoint'] for r in rows})} checkpoints: "
                  f"{out / 'sweep.csv'}, {out / 'sweep.png'}")
        else:
            out = args.out or default_out(args.model, args.benchmark if args.command == "mcqa" else args.command)
            lm = load_model(args, args.model)
            if args.command == "igakuqa":
                _igakuqa(args, lm, out, args.data, echo=True)
            elif args.command == "jmed-llm":
                _jmed_llm(args, lm, out, args.data, echo=True)
            elif args.command == "mcqa":
                embedder = load_model(args, args.embedder) if args.embedder else None
                run_mcqa(lm, args.benchmark, args.data, out, args.train, args.shots, args.select, args.cot, args.samples,
                         args.temperature, args.method, args.max_new_tokens, args.batch_size, embedder, args.cop_base)
            elif args.command == "qa":
                run_qa(lm, args.data, out, args.unit, args.max_new_tokens, args.repetition_penalty, args.batch_size)
            else:
                docs, skipped = heldout_documents(args.data)
                run_perplexity(lm, docs, out, skipped)
    except (igakuqa.IgakuQAError, jmed_llm.JmedLLMError, CorpusError, CheckpointError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
