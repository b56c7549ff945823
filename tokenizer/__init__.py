"""The Japanese tokenizer (report §2.2): cleaning -> MeCab morphemes -> SentencePiece Unigram.

A standalone package: it never imports `slm`.
"""

from tokenizer.clean import CleanConfig, clean, normalize
from tokenizer.japanese import JapaneseTokenizer

__all__ = ["JapaneseTokenizer", "CleanConfig", "clean", "normalize"]
