"""A transformers tokenizer (a local folder: Llama, Gemma, Mistral, Qwen2...) behind
JapaneseTokenizer's interface, so open models continue pretraining, fine-tune and are evaluated
on slm's pipeline with their own vocabulary (the recipes in configs/recipes/).

`load_tokenizer(folder)` picks the class: a transformers folder has tokenizer_config.json; ours
has the SentencePiece model and its settings. Chat fine-tuning uses slm's one chat template on
these tokenizers too: its role tokens are added as special tokens (the model's embedding grows by
three rows, which a LoRA adapter stores alone), so training, generation and evaluation agree.
Corpus cleaning keeps only the language-neutral steps (no full-width punctuation, dash or symbol
unification, no allowed-character filter): those are for Japanese text and this tokenizer's data
may be English.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizer.clean import CleanConfig
from tokenizer.folders import StagedFolder

HF_CONFIG = "tokenizer_config.json"
EXPORT_CLASS = "SLMTokenizer"  # its tokenizer_class: slm's own tokenizer exported (tokenizer.hf_export)
NEUTRAL_CLEANING = CleanConfig(skip=["fullwidth_punct", "dashes", "unify_symbols", "restore_symbols", "allowed_chars"])


class HFTokenizer:
    def __init__(self, directory: str | Path):
        from transformers import AutoTokenizer  # optional heavy dependency: transformers

        self.directory = Path(directory)
        if not (self.directory / HF_CONFIG).is_file():
            raise FileNotFoundError(f"{self.directory} is not a transformers tokenizer folder: {HF_CONFIG} is missing")
        self.tok = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        if self.tok.eos_token_id is None:
            raise ValueError(f"{self.directory}: the tokenizer has no eos token, which ends documents and answers")
        self.clean_config = NEUTRAL_CLEANING

    @classmethod
    def load(cls, directory: str | Path) -> HFTokenizer:
        return cls(directory)

    def save(self, directory: str | Path) -> None:
        """transformers' files, written complete beside `directory` first, then moved in one by one
        (a model folder may hold the tokenizer among its own files: nothing else there is touched)."""
        with StagedFolder(directory, replace=True, owned=None) as tmp:
            self.tok.save_pretrained(tmp)

    # ------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    @property
    def bos_id(self) -> int | None:
        return self.tok.bos_token_id  # None for models without one (Qwen2)

    @property
    def eos_id(self) -> int:
        return self.tok.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id

    @property
    def newline_id(self) -> int | None:
        ids = self.tok("\n", add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    @property
    def newline_ids(self) -> list[int]:
        """Every token whose text holds a line break ("\n", "\n\n", "<0x0A>", "Ċ"...): generation that
        should end at the line's end stops on any of them (found once, by decoding the vocabulary)."""
        if not hasattr(self, "_newline_ids"):
            texts = self.tok.batch_decode([[i] for i in range(len(self.tok))])
            self._newline_ids = [i for i, text in enumerate(texts) if "\n" in text]
        return self._newline_ids

    @property
    def special_tokens(self) -> dict[str, int]:
        return {t: self.tok.convert_tokens_to_ids(t) for t in self.tok.all_special_tokens}

    def token_id(self, token: str) -> int:
        """The id of a special token such as "<|user|>"; KeyError when the tokenizer lacks it."""
        vocab = self.tok.get_vocab()
        if token not in vocab:
            raise KeyError(f"{token!r} is not a token of {self.directory}")
        return vocab[token]

    def add_special_tokens(self, tokens: Sequence[str]) -> list[str]:
        added = [t for t in dict.fromkeys(tokens) if t not in self.tok.get_vocab()]
        if added:
            self.tok.add_tokens(added, special_tokens=True)  # special: never split, skipped when decoding answers
        return added

    def id_to_piece(self, i: int) -> str:
        return self.tok.convert_ids_to_tokens(int(i))

    # ------------------------------------------------------------ encode / decode

    def normalize(self, text: str) -> str:
        return text  # the tokenizer normalises inside; characters are counted on the text as given

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        return ([self.bos_id] if add_bos and self.bos_id is not None else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: Sequence[str], num_workers: int = 1, add_bos: bool = False,
                     add_eos: bool = False, chunksize: int = 256) -> list[list[int]]:
        """One call of the (Rust) fast tokenizer over the batch; `num_workers` is for the interface."""
        batch = self.tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        head = [self.bos_id] if add_bos and self.bos_id is not None else []
        tail = [self.eos_id] if add_eos else []
        return [head + ids + tail for ids in batch]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def __len__(self) -> int:
        return self.vocab_size

    def __reduce__(self):
        return (HFTokenizer, (str(self.directory),))


def load_tokenizer(directory: str | Path):
    """A tokenizer folder: ours (python -m tokenizer.train), ours exported for transformers (read
    back as the JapaneseTokenizer it was), or a transformers one."""
    directory = Path(directory)
    exported = export_config(directory)
    if exported is None and (directory / HF_CONFIG).is_file():
        return HFTokenizer(directory)
    from tokenizer.japanese import JapaneseTokenizer  # the MeCab stack (sentencepiece, fugashi), ours only

    if exported is not None:  # ours exported (tokenizer.hf_export): its files and settings, no code from the folder
        if "settings" not in exported:
            raise ValueError(f"{directory / HF_CONFIG}: an {EXPORT_CLASS} export without its settings")
        return JapaneseTokenizer(directory, settings=exported["settings"])
    return JapaneseTokenizer.load(directory)


def export_config(directory: str | Path) -> dict | None:
    """The tokenizer_config.json of slm's tokenizer exported for transformers (tokenizer.hf_export),
    or None when `directory` holds no such export."""
    path = Path(directory) / HF_CONFIG
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return config if config.get("tokenizer_class") == EXPORT_CLASS else None


def model_tokenizer_dir(model_dir: str | Path) -> Path:
    """Where a model folder keeps its tokenizer: tokenizer/ in ours, the folder itself in transformers'."""
    model_dir = Path(model_dir)
    return model_dir / "tokenizer" if (model_dir / "tokenizer").is_dir() else model_dir
