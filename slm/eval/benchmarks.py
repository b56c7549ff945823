"""Each benchmark end to end, as `evaluate.py` and a notebook run it: put it to a model, score
it, write predictions.jsonl, metrics.json and table.md, and return the headline numbers (what
a checkpoint sweep plots).

    from slm.lm import load_lm
    from slm.eval.benchmarks import run_igakuqa
    lm = load_lm("runs/finetune/tiny-sample")            # a run folder: its best checkpoint
    run_igakuqa(lm, "IgakuQA", "runs/eval/tiny-sample/igakuqa")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slm.eval import igakuqa, jmed_llm, mcqa
from slm.eval.harness import Item, Method, answer_items, write_results
from slm.eval.perplexity import perplexity
from slm.lm import LocalLM


def run_igakuqa(lm: LocalLM, data: str | Path, out: str | Path, method: Method = "generate", shots: int = 3,
                shots_file: str | Path | None = None, years: Sequence[str] | None = None, loglik_target: str = "letter",
                max_new_tokens: int = 32, batch_size: int = 8, progress: bool = True, echo: bool = True) -> dict:
    """IgakuQA with the published prompt; the few-shot examples come from prompts/prompt.jsonl
    beside the data unless `shots_file` names them."""
    questions = igakuqa.load_questions(data)
    if years:
        missing = set(years) - {q.year for q in questions.values()}
        if missing:
            raise igakuqa.IgakuQAError(f"{data}: no questions for year(s) {sorted(missing)}")
        questions = {pid: q for pid, q in questions.items() if q.year in years}
    examples: list[igakuqa.Question] = []
    if shots:
        path = shots_file or igakuqa.find_shots(data)
        if path is None:
            raise igakuqa.IgakuQAError(f"{data}: no {igakuqa.SHOTS_FILE} beside the data for the {shots} few-shot "
                                       f"examples; name the file, or ask for 0 shots")
        examples = igakuqa.load_shots(path)[:shots]
        if len(examples) < shots:
            raise igakuqa.IgakuQAError(f"{path}: {len(examples)} examples, {shots} asked for")
    result = igakuqa.evaluate(lm, questions, examples, method, loglik_target, max_new_tokens, batch_size, progress)
    metrics = {"settings": result["settings"], "overall": result["overall"], "years": result["years"]}
    table = igakuqa.table(result)
    write_results(out, result["questions"], metrics, table)
    if echo:
        print(table + _problems(result["years"], "questions") + f"written to {out}")
    return igakuqa.headline(result)


def run_jmed_llm(lm: LocalLM, data: str | Path, out: str | Path, tasks: Sequence[str] = jmed_llm.TASKS,
                 method: Method = "generate", mode: str = "upstream", max_new_tokens: int = 512, batch_size: int = 8,
                 progress: bool = True, echo: bool = True) -> dict:
    """The JMED-LLM tasks with the official prompts, scored in `mode` (upstream or corrected)."""
    results, outputs, errors = jmed_llm.evaluate(lm, data, tuple(tasks), method, mode, max_new_tokens, batch_size, progress)
    settings = {"model": lm.name, "chat": lm.chat, "method": method, "max_new_tokens": max_new_tokens}
    rows, metrics = jmed_llm.report(results, outputs, mode, settings, errors)
    table = jmed_llm.table(results)
    write_results(out, rows, metrics, table)
    if echo:
        print(table + _problems({t: metrics[t] for t in results}, "rows") + f"written to {out}")
    return jmed_llm.headline(metrics)


def heldout_documents(files: Sequence[str | Path]) -> tuple[list[str], int]:
    """(documents, unreadable lines skipped) of held-out text files (blank-line separated) or JSONL."""
    from slm.data.readers import ReadErrors, SourceConfig, read_documents

    errors = ReadErrors()
    docs = [d.text for d in read_documents(SourceConfig(name="heldout", paths=[str(f) for f in files]), errors)]
    return docs, errors.total


def run_perplexity(lm: LocalLM, documents: Sequence[str], out: str | Path, skipped: int = 0, progress: bool = True,
                   echo: bool = True) -> dict:
    """Perplexity and bits per character; `skipped` (unreadable lines of the inputs) is reported."""
    result = {**perplexity(lm, documents, progress), "model": lm.name, "unreadable_lines_skipped": skipped}
    table = ("| documents | tokens | characters | perplexity | bits/character |\n|---|---|---|---|---|\n"
             f"| {result['documents']:,} | {result['tokens']:,} | {result['characters']:,} | "
             f"{result['perplexity']:.2f} | {result['bits_per_character']:.3f} |\n")
    write_results(out, [], result, table)
    if echo:
        print(table + f"{skipped} unreadable lines skipped; written to {out}")
    return {"perplexity": result["perplexity"], "bits_per_character": result["bits_per_character"]}


def run_mcqa(lm: LocalLM, benchmark: str, data: Sequence[str | Path], out: str | Path,
             train: Sequence[str | Path] = (), shots: int = 0, selection: str = "fixed", cot: bool = False,
             samples: int = 1, temperature: float = 0.7, method: Method = "generate", max_new_tokens: int | None = None,
             batch_size: int = 8, embedder: LocalLM | None = None, cop_base: int = 1, progress: bool = True,
             echo: bool = True) -> dict:
    """An English medical multiple-choice benchmark (slm.eval.mcqa): accuracy with its 95% interval."""
    questions, skipped = mcqa.load(benchmark, data, cop_base)
    examples = mcqa.load(benchmark, train, cop_base)[0] if train else []
    result = mcqa.evaluate(lm, questions, examples, shots, selection, cot, samples, temperature, method, max_new_tokens,
                           batch_size, embedder, progress=progress)
    rows = result.pop("rows")
    table = mcqa.table({benchmark: result})
    write_results(out, rows, {benchmark: result, "skipped_records": skipped}, table)
    if echo:
        print(table + _problems({benchmark: result}, "questions")
              + (f"{len(skipped)} records skipped: {skipped[:5]}\n" if skipped else "") + f"written to {out}")
    return {"accuracy": result["accuracy"]}


def run_qa(lm: LocalLM, data: Sequence[str | Path], out: str | Path, unit: str = "words", max_new_tokens: int = 256,
           repetition_penalty: float = 1.0, batch_size: int = 8, echo: bool = True) -> dict:
    """Free-text answers to held-out conversations (their last assistant turn is the reference):
    exact match, token F1, ROUGE-L, BLEU and the degeneration statistics (slm.metrics)."""
    from slm.data.readers import ReadErrors
    from slm.metrics import free_text_report
    from slm.finetune.instructions import load_conversations

    errors = ReadErrors()
    conversations = load_conversations([str(p) for p in data], errors)
    references = [c[-1]["content"] for c in conversations]
    items = [Item(str(i), [c[:-1]]) for i, c in enumerate(conversations)]
    replies = answer_items(lm, items, "generate", max_new_tokens, batch_size, progress=False,
                           repetition_penalty=repetition_penalty)
    replies = [replies[str(i)] for i in range(len(conversations))]
    answers = [r.output for r in replies]
    # a prompt too long for the model is an empty answer that never stopped: counted, listed
    finished = [bool(r.finished) for r in replies]
    report = {**free_text_report(answers, references, finished, unit), "malformed_records_skipped": errors.total,
              "not_answered": [i for i, r in enumerate(replies) if r.error],
              "settings": {"model": lm.name, "unit": unit, "max_new_tokens": max_new_tokens,
                           "repetition_penalty": repetition_penalty}}
    keys = ("exact_match", "token_f1", "rouge_l", "bleu", "distinct_2", "longest_repeat_max", "never_stopped")
    table = ("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| "
             + " | ".join(f"{report[k]:.3f}" if k in report else "n/a" for k in keys) + " |\n")
    rows = [{"answer": a, "reference": r, "finished": f, "error": x.error}
            for a, r, f, x in zip(answers, references, finished, replies)]
    write_results(out, rows, report, table)
    if echo:
        print(table + f"{len(answers)} answers, {len(report['not_answered'])} prompts too long for the model; "
              f"{errors.total} malformed records skipped; written to {out}")
    return {k: report[k] for k in keys if k in report}


def _problems(groups: dict[str, dict], what: str) -> str:
    """Lines naming the unreadable and unanswered items of each year or task (counted as wrong)."""
    lines = []
    for name, g in groups.items():
        for key, label in (("unparsed", "no readable answer"), ("not_answered", "prompt too long for the model"),
                           ("missing", "no prediction")):
            if g.get(key):
                lines.append(f"{name}: {label} (counted wrong) for {len(g[key])} of the {what}: {g[key][:10]}")
    return "".join(line + "\n" for line in lines)
