"""The model card of an export (README.md in the Hub's format), filled from what the run recorded.

A metadata block (language, license, library, pipeline, tags, the base model's Hub id where one
is given), then: the architecture and parameter count; the tokenizer; each training stage that led to
the checkpoint, newest first (an instruction-tuned model names its pretraining run too): its data
as the run recorded it (a prepared corpus's sources with documents read, kept and removed by
each filter, tokens, decontamination; an instruction mixture's task x label counts) and its
hyperparameters; the evaluation tables found for the checkpoint (a sweep's, in `<run>/eval/`,
and evaluate.py's default `runs/eval/<run>-<checkpoint>/`); intended use and limitations. What
a run did not record is said to be unrecorded, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from slm import runs
from slm.data.prepare import REPORT_FILE
from slm.finetune.trainer import MIXTURE_FILE
from slm.model import SLM
from tokenizer.morph import unidic_version

LIMITATIONS = """\
- A research model for studying small language models of Japanese medical text.
  It is not a medical device and must not be used for diagnosis, treatment or any decision about a patient.
- It can state false things fluently, including wrong drugs, doses and values; benchmark scores
  measure multiple-choice and extraction tasks, not safe clinical advice.
- It reflects its training text (the corpora above), with their gaps and biases; text about
  rare conditions, recent guidance and non-standard Japanese is likely to be weaker."""


def _metadata(*, license: str, base: str | None, adapter_only: bool) -> str:
    tags = ["slm", "japanese", "medical", "text-generation"] + (["peft", "lora"] if adapter_only else [])
    lines = ["---", "language:", "- ja", f"license: {license}",
             f"library_name: {'peft' if adapter_only else 'transformers'}", "pipeline_tag: text-generation", "tags:",
             *(f"- {t}" for t in tags)]
    if base:
        lines.append(f"base_model: {base}")
    return "\n".join(lines + ["---", ""])


def _architecture(model: SLM) -> list[str]:
    c = model.config
    total = sum(p.numel() for p in model.parameters())
    embed = model.embed.weight.numel()
    mlp = f"{'gated ' if c.mlp_gated else ''}{c.mlp_act} MLP of width {c.d_mlp}"
    return ["## Model", "",
            f"- Decoder-only transformer: {c.n_layers} layers, width {c.d_model}, {c.n_heads} attention heads sharing "
            f"{c.n_kv_heads} key/value heads (GQA), {mlp}, RoPE (base {c.rope_theta:g}), pre-norm RMSNorm, "
            f"{'tied' if c.tie_embeddings else 'untied'} embedding and output head, context {c.max_seq_len} tokens.",
            f"- Parameters: {total:,} ({embed:,} in the embedding).", ""]


def _tokenizer(tokenizer, chat: bool) -> list[str]:
    settings = getattr(tokenizer, "settings", {})
    terms = settings.get("training", {}).get("user_dict_terms")
    return ["## Tokenizer", "",
            f"- Normalisation (NFKC with medical exceptions, widths, punctuation, symbols), then MeCab "
            f"(fugashi, unidic-lite {settings.get('unidic_version', unidic_version())}"
            f"{f', a medical user dictionary of {terms:,} terms' if terms else ''}) and a SentencePiece Unigram model "
            f"of {tokenizer.vocab_size:,} tokens with byte fallback; pieces never cross a morpheme boundary.",
            "- Loaded with `AutoTokenizer.from_pretrained(folder, trust_remote_code=True)` (the class ships in "
            "`tokenization_slm.py`; it needs fugashi, unidic-lite and sentencepiece).",
            *(["- Chat template: `<begin_of_text><|system|>…<|user|>…<|assistant|>…<end_of_text>` "
               "(`tokenizer.apply_chat_template`)."] if chat else []), ""]


def _table(rows: dict[str, object]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())]


def _mixture(mixture: dict | None) -> str:
    """A pretraining mixture as a reader wants it: its settings that are set ("weights clinical 1.0")."""
    parts = [f"{key} " + (", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
             for key, value in (mixture or {}).items() if value]
    return "; ".join(parts) or "each source as prepared"


def _data(run: Path, config: dict) -> list[str]:
    """What the stage trained on, as the run and its data folder recorded it."""
    if "data" in config:
        report_path = Path(config["data"]) / REPORT_FILE
        if not report_path.is_file():
            return [f"Prepared corpus `{config['data']}`: its {REPORT_FILE} is not there, so its sources are "
                    "unrecorded here.", ""]
        report = json.loads(report_path.read_text(encoding="utf-8"))
        lines = [f"Prepared corpus `{config['data']}` (mixture: {_mixture(config.get('mixture'))}):", "",
                 "| source | read | kept | tokens | removed (by stage) |", "|---|---|---|---|---|"]
        for name, s in report.get("sources", {}).items():
            removed = ", ".join(f"{k.split(':', 1)[1]} {v:,}" for k, v in s.items() if k.startswith("removed:") and v)
            lines.append(f"| {name} | {s.get('read', 0):,} | {s.get('kept', 0):,} | {s.get('tokens', 0):,} | "
                         f"{removed or 'none'} |")
        decontam = report.get("stage_stats", {}).get("decontamination")
        lines += ["", f"Stages: {', '.join(report.get('stages', []))}."]
        if decontam:
            lines.append(f"Decontamination against: {', '.join(f'`{Path(k).name}` ({v})' for k, v in decontam.items())}.")
        return lines + [""]
    lines = [f"Instruction data: {', '.join(f'`{f}`' for f in config.get('train_files', []))}."]
    mixture = run / MIXTURE_FILE
    if mixture.is_file():
        counts = json.loads(mixture.read_text(encoding="utf-8"))
        lines += ["", "| task | label: rows trained on (before the mixture) | held out for selection |", "|---|---|---|"]
        for task, labels in counts.get("after", {}).items():
            before = counts.get("before", {}).get(task, {})
            held = counts.get("selection", {}).get(task, {})
            lines.append(f"| {task} | {', '.join(f'{k}: {v} ({before.get(k, v)})' for k, v in labels.items())} | "
                         f"{', '.join(f'{k}: {v}' for k, v in held.items()) or '-'} |")
    return lines + [""]


def _hyperparameters(config: dict) -> dict[str, object]:
    optim = config.get("optim", {})
    rows = {"steps": config.get("steps"), "sequence length": config.get("seq_len"),
            "global batch (sequences)": config.get("global_batch"), "micro batch": config.get("micro_batch"),
            "optimizer": f"AdamW, lr {optim.get('lr')}, betas {optim.get('betas')}, weight decay "
                         f"{optim.get('weight_decay')}, warmup {optim.get('warmup_steps')} steps, "
                         f"{optim.get('schedule')} schedule", "precision": config.get("precision")}
    if all(isinstance(config.get(k), int) for k in ("steps", "global_batch", "seq_len")):
        rows["token positions seen (steps x global batch x sequence length)"] = \
            f"{config['steps'] * config['global_batch'] * config['seq_len']:,}"
    if "neftune_alpha" in config:
        rows["NEFTune alpha"] = config["neftune_alpha"]
    if config.get("lora"):
        rows["LoRA"] = config.get("lora_config")
    return rows


def _chosen(best: dict) -> str:
    """How `best` was chosen, in words: ", chosen by task on the selection split: 0.019 (crade 0.000, ...)"."""
    metric = best.get("metric", "its score")
    value = best.get(metric)
    per_task = best.get("per_task") or {}
    return (f", chosen by {metric} on the selection split"
            + (f": {value:.3f}" if isinstance(value, (int, float)) else "")
            + (f" ({', '.join(f'{t} {v:.3f}' for t, v in per_task.items())})" if per_task else ""))


def _stages(checkpoint: Path) -> list[str]:
    """Each training stage behind the checkpoint, following init_from back through run folders."""
    lines, seen = ["## Training", ""], set()
    while (run := runs.run_of(checkpoint)) is not None and run.resolve() not in seen:
        seen.add(run.resolve())
        config = runs.run_config(run)
        kind = "Instruction tuning" if "train_files" in config or "stages" in config else "Pretraining"
        best = runs.read_pointer(runs.checkpoints_dir(run), runs.BEST)
        chosen = _chosen(best) if best and best.get("checkpoint") == checkpoint.name else ""
        lines += [f"### {kind}: run `{run.name}`, checkpoint `{checkpoint.name}`{chosen}", "", *_data(run, config),
                  *_table(_hyperparameters(config)), ""]
        if not config.get("init_from"):
            break
        checkpoint = Path(config["init_from"])
        lines += [f"It started from `{checkpoint}`.", ""]
    if len(lines) == 2:
        lines += ["The checkpoint is not in a run folder: how it was trained is unrecorded here.", ""]
    return lines


def evaluation_tables(checkpoint: Path, given: Sequence[str | Path] = ()) -> list[Path]:
    """The table.md of every evaluation of the checkpoint: a sweep's (`<run>/eval/<checkpoint>/`),
    evaluate.py's default (`runs/eval/<run>-<checkpoint>/`), and the result folders `given`
    (evaluate.py --out, or a folder of them). A given table whose metrics.json names another
    checkpoint is refused (ValueError), so a card never shows another model's scores."""
    run = runs.run_of(checkpoint)
    places = [Path("runs") / runs.EVAL_DIR / runs.display_name(checkpoint)]
    if run is not None:
        places.insert(0, run / runs.EVAL_DIR / checkpoint.name)
    found = [t for place in places if place.is_dir() for t in place.glob("*/table.md")]
    for folder in map(Path, given):
        tables = [folder / "table.md"] if (folder / "table.md").is_file() else sorted(folder.glob("*/table.md"))
        if not tables:
            raise ValueError(f"--evaluation {folder}: no table.md there or in its subfolders (evaluate.py --out)")
        for table in tables:
            metrics = table.parent / "metrics.json"
            model = json.loads(metrics.read_text(encoding="utf-8")).get("settings", {}).get("model") \
                if metrics.is_file() else None
            if model not in (None, checkpoint.name):
                raise ValueError(f"--evaluation {table.parent}: it evaluated {model}, not {checkpoint.name}")
        found += tables
    return sorted({t.resolve(): t for t in found}.values())


def _evaluations(tables: list[Path]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not tables:
        return lines + ["No evaluation of this checkpoint was found (`evaluate.py` writes them to "
                        "`runs/eval/<run>-<checkpoint>/`, a sweep to `<run>/eval/`; `--evaluation` names others).", ""]
    for table in tables:
        lines += [f"### {table.parent.name} (`{table.parent}`)", "", table.read_text(encoding="utf-8").strip(), ""]
    return lines


def _usage(chat: bool, adapter_only: bool) -> list[str]:
    """Code that runs as it is once FOLDER (and BASE_EXPORT for an adapter) is set (tests/test_export.py)."""
    if adapter_only:
        load = ("from peft import PeftModel\nbase = AutoModelForCausalLM.from_pretrained(BASE_EXPORT)\n"
                "model = PeftModel.from_pretrained(base, FOLDER)")
    else:
        load = "model = AutoModelForCausalLM.from_pretrained(FOLDER)"
    ask = ('inputs = tok.apply_chat_template([{"role": "user", "content": "高血圧の治療薬は？"}],\n'
           '                                 add_generation_prompt=True, return_tensors="pt")') if chat else \
        'inputs = tok("高血圧は", return_tensors="pt")'
    return ["## How to use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            "tok = AutoTokenizer.from_pretrained(FOLDER, trust_remote_code=True)", load, ask,
            "out = model.generate(**inputs, max_new_tokens=64)  # generation_config.json: the recommended sampling",
            'print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))', "```", ""]


def model_card(checkpoint: Path, model: SLM, tokenizer, *, chat: bool, adapter_only: bool, license: str,
               base_model: str | None = None, evaluations: Sequence[Path] = ()) -> str:
    """README.md of the export of `checkpoint` (`model` and `tokenizer` as loaded from it), with the
    evaluation tables `evaluations` (evaluation_tables). `base_model` is the metadata's Hub id of the
    base; the training section names the base checkpoint whatever it is."""
    name = runs.display_name(checkpoint)
    kind = "An instruction-tuned" if chat else "A base"
    intro = [f"# {name}", "", f"{kind} Japanese medical language model trained with slm"
             f"{' (a LoRA adapter in PEFT format)' if adapter_only else ''}. Exported from `{checkpoint}`.", ""]
    return "\n".join([_metadata(license=license, base=base_model, adapter_only=adapter_only), *intro,
                      *_architecture(model),
                      *_tokenizer(tokenizer, chat), *_stages(checkpoint), *_evaluations(list(evaluations)),
                      "## Intended use and limitations", "", LIMITATIONS, "", *_usage(chat, adapter_only)])
