"""Models leave the library: a folder that transformers, the Hub, pipelines and PEFT load as it is.

    python -m slm.export --model runs/finetune/sft --out exported/sft [--dtype bfloat16] [--max-shard-size 5GB]
    python -m slm.export --model runs/finetune/lora --out exported/lora-adapter --adapter-only

`--model` is a run folder (its best checkpoint, else its newest), a checkpoint, or a `best` /
`latest` pointer (slm.runs.resolve_model_dir). The folder holds:
- the weights and config.json (slm.hf.export: Arcee or Llama architecture, the embedding scale
  folded in), in shards with an index above `--max-shard-size`;
- generation_config.json: the begin, end and padding ids, and the library's recommended decoding
  (slm.generate.RECOMMENDED);
- the tokenizer (tokenizer.hf_export): a small PreTrainedTokenizer class shipped in the folder
  (`trust_remote_code=True`) that normalises, runs MeCab with the same user dictionary and the
  same SentencePiece model, giving exactly JapaneseTokenizer's ids; the chat template as Jinja
  (slm.chat.CHAT_TEMPLATE) for a model that was instruction-tuned;
- README.md, a model card in the Hub's format (model_card), filled from the run folder, with the
  evaluation tables found for the checkpoint and those of `--evaluation DIR` (evaluate.py's --out).

A LoRA checkpoint is merged onto its base; with `--adapter-only` it is written as a PEFT adapter
instead (slm.lora.save_peft_adapter), to put on the base's own export with
`peft.PeftModel.from_pretrained`. The folder is built beside `--out` and moved into place
complete; an `--out` that holds files is refused unless `--overwrite`. Loading needs fugashi,
unidic-lite and sentencepiece, nothing of slm; `slm.hf.load` reads the folder back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import torch

from slm import hf, runs
from slm.chat import CHAT_TEMPLATE
from slm.checkpoint import CheckpointError, atomic_write
from slm.config import ConfigError
from slm.generate import RECOMMENDED
from slm.lm import SLMAdapter, lora_base
from slm.lora import ADAPTER_CONFIG, load_adapter, save_peft_adapter
from slm.model_card import evaluation_tables, model_card
from tokenizer.folders import FolderExistsError, StagedFolder
from tokenizer.hf import HF_CONFIG
from tokenizer.hf_export import save_transformers_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GENERATION_CONFIG = "generation_config.json"
CARD = "README.md"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # transformers' units: GB is 10^9


class ExportError(ValueError):
    """What to export cannot be exported as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    dtype: str | None = None  # None: the checkpoint's own
    max_shard_size: str = "5GB"
    adapter_only: bool = False
    license: str = "other"  # the card's license: the data's and the base model's terms decide it
    evaluations: tuple[str, ...] = ()  # result folders (evaluate.py --out) whose tables the card shows too
    base_model: str | None = None  # the base's Hub id: the Hub links models by it, and a local path is none
    overwrite: bool = False


def parse_size(text: str) -> int:
    """Bytes of a size such as "5GB", "500MB" or "2GiB" (GB = 10^9 bytes, as transformers reads it)."""
    m = _SIZE.match(text)
    if not m:
        raise ExportError(f"--max-shard-size {text!r}: give a size such as 5GB, 500MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()])


def generation_config(tokenizer) -> dict:
    """The ids and the recommended decoding, as transformers' GenerationConfig reads them."""
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id,
            **RECOMMENDED}


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _owned(out: Path) -> set[str]:
    """An earlier export may be replaced whole (with --overwrite); a folder holding anything else never."""
    if (out / CARD).is_file() and (out / HF_CONFIG).is_file():
        return {p.name for p in out.iterdir()}
    return set()


def export(model: str | Path, out: str | Path, options: ExportOptions = ExportOptions()) -> Path:
    """Write the export of `model` (run, checkpoint or pointer) to `out`; returns the checkpoint exported."""
    checkpoint = runs.resolve_model_dir(model)
    lora = (checkpoint / ADAPTER_CONFIG).is_file()
    if options.adapter_only and not lora:
        raise ExportError(f"{checkpoint} is not a LoRA checkpoint (no {ADAPTER_CONFIG}): --adapter-only exports "
                          "adapters; leave it out to export the whole model")
    if options.dtype is not None and options.dtype not in DTYPES:
        raise ExportError(f"--dtype {options.dtype!r}: one of {', '.join(DTYPES)}")
    shard = parse_size(options.max_shard_size)
    tables = evaluation_tables(checkpoint, options.evaluations)  # checked before any work
    stage = StagedFolder(out, replace=options.overwrite, owned=_owned(Path(out)), what="an export")  # before loading
    loaded = SLMAdapter.from_folder(checkpoint)  # a LoRA checkpoint comes merged onto its base
    chat = loaded.chat
    with stage as tmp:
        if options.adapter_only:
            base = lora_base(checkpoint)
            adapter = load_adapter(hf.load_model_folder(base, dtype=torch.float32), checkpoint)
            save_peft_adapter(adapter, tmp, base_model=options.base_model or str(base))
        else:
            hf.export(loaded.model, tmp, DTYPES.get(options.dtype), max_shard_size=shard)
            _write_json(tmp / GENERATION_CONFIG, generation_config(loaded.tokenizer))
        save_transformers_tokenizer(loaded.tokenizer, tmp, chat_template=CHAT_TEMPLATE if chat else None,
                                    model_max_length=loaded.model.config.max_seq_len)
        card = model_card(checkpoint, loaded.model, loaded.tokenizer, chat=chat, adapter_only=options.adapter_only,
                          license=options.license, base_model=options.base_model, evaluations=tables)
        atomic_write(tmp / CARD, lambda p: p.write_text(card, encoding="utf-8"))
    return checkpoint


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slm.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a run folder, a checkpoint, or a best/latest pointer")
    p.add_argument("--out", required=True, help="the folder to write (new or empty, or see --overwrite)")
    p.add_argument("--dtype", choices=list(DTYPES), help="weights' dtype (default: the checkpoint's)")
    p.add_argument("--max-shard-size", default=ExportOptions.max_shard_size,
                   help="largest weight file; above it, shards with an index (default: %(default)s)")
    p.add_argument("--adapter-only", action="store_true", help="a LoRA checkpoint as a PEFT adapter, not merged")
    p.add_argument("--license", default=ExportOptions.license, help="the card's license identifier (default: other)")
    p.add_argument("--evaluation", nargs="+", default=[], metavar="DIR",
                   help="evaluate.py result folders (its --out) of this checkpoint whose tables the model card shows, "
                        "beside those found in the run folder and runs/eval/")
    p.add_argument("--base-model", metavar="HUB_ID",
                   help="the Hub id of the model this one was trained from, for the card's base_model (left out "
                        "without it: a base pretrained with slm has no id until it is shared)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds, once the export is complete")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = ExportOptions(dtype=args.dtype, max_shard_size=args.max_shard_size, adapter_only=args.adapter_only,
                            license=args.license, evaluations=tuple(args.evaluation), base_model=args.base_model,
                            overwrite=args.overwrite)
    try:
        checkpoint = export(args.model, args.out, options)
    except (ConfigError, CheckpointError, FolderExistsError, FileNotFoundError, ValueError) as e:  # ExportError too
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = "PEFT adapter" if args.adapter_only else "model"
    print(f"exported the {what} of {checkpoint} to {args.out}: load it with "
          f"AutoTokenizer/AutoModelForCausalLM.from_pretrained({args.out!r}, trust_remote_code=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
