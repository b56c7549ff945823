"""A transformers tokenizer behind the tokenizer interface: data preparation, continued pretraining
and chat fine-tuning of an open model with its own vocabulary."""

import json

import pytest
import torch

from tokenizer.hf import HFTokenizer, load_tokenizer, model_tokenizer_dir

pytest.importorskip("transformers")


def test_the_interface(hf_dir, tokenizer_dir, tmp_path):
    tok = load_tokenizer(hf_dir)
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == 257 and tok.bos_id is None  # byte-level, no bos
    assert tok.pad_id == tok.eos_id == 256  # no pad token: eos pads
    ids = tok.encode("fever and cough", add_bos=True, add_eos=True)
    assert ids[-1] == tok.eos_id and tok.decode(ids, skip_special_tokens=True) == "fever and cough"
    assert tok.encode_batch(["a", "bc"], add_eos=True) == [tok.encode("a", add_eos=True), tok.encode("bc", add_eos=True)]
    assert tok.newline_id == tok.encode("\n")[0]
    assert tok.add_special_tokens(["<|user|>", "<|assistant|>", "<|user|>"]) == ["<|user|>", "<|assistant|>"]
    assert tok.token_id("<|user|>") == 257 and tok.vocab_size == 259
    assert tok.add_special_tokens(["<|user|>"]) == []
    with pytest.raises(KeyError):
        tok.token_id("<|system|>")
    tok.save(tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").token_id("<|assistant|>") == 258  # added tokens are saved
    assert type(load_tokenizer(tokenizer_dir)).__name__ == "JapaneseTokenizer"  # ours is told apart
    assert model_tokenizer_dir(hf_dir) == hf_dir


@pytest.mark.slow
def test_an_open_model_continues_pretraining_and_is_chat_tuned_with_its_own_tokenizer(hf_dir, tmp_path):
    from slm.data.prepare import DataConfig, prepare
    from slm.finetune.trainer import FinetuneConfig, finetune
    from slm.lm import load_lm
    from slm.train.config import TrainConfig
    from slm.train.trainer import train

    corpus = tmp_path / "labels.txt"
    corpus.write_text("\n\n".join(f"Take {n} mg of the drug twice daily with food. Store at 20 to 25 C. "
                                  f"Keep out of reach of children. Lot {n}." for n in range(40)) + "\n")
    prepare(DataConfig.from_dict({"out": str(tmp_path / "data"), "tokenizer": str(hf_dir), "num_workers": 1,
                                  "sources": [{"name": "labels", "paths": [str(corpus)]}],
                                  "dedup": {"capacity": 10000, "sentence_capacity": 10000},
                                  "filters": {"length": {"enabled": False}, "japanese_ratio": {"enabled": False},
                                              "incomplete_sentences": {"enabled": False}}}), progress=False)
    tokens = json.loads((tmp_path / "data" / "tokens.json").read_text())
    assert tokens == {"vocab_size": 257, "bos_id": None, "eos_id": 256, "pad_id": 256}
    train(TrainConfig.from_dict({"out": str(tmp_path / "cpt"), "data": str(tmp_path / "data"),
                                 "mixture": {"weights": {"labels": 1.0}}, "init_from": str(hf_dir), "seq_len": 64,
                                 "micro_batch": 2, "global_batch": 2, "steps": 4, "tensorboard": False,
                                 "optim": {"warmup_steps": 1}, "checkpoint": {"every": 4}}))
    cpt = tmp_path / "cpt" / "checkpoints" / "step-0000004"
    assert (cpt / "tokenizer" / "tokenizer_config.json").is_file()  # the model's own tokenizer travels along
    chats = tmp_path / "chat.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "yes"}]})
                             + "\n" for q in ("Is fever present?", "Is cough present?") * 8))
    result = finetune(FinetuneConfig.from_dict({
        "out": str(tmp_path / "sft"), "init_from": str(cpt), "train_files": [str(chats)], "eval_files": [str(chats)],
        "seq_len": 64, "micro_batch": 4, "global_batch": 4, "steps": 4, "tensorboard": False, "lora": True,
        "lora_config": {"rank": 2, "alpha": 4, "dropout": 0.0}, "eval_max_new_tokens": 4,
        "optim": {"lr": 1e-3, "warmup_steps": 1}, "checkpoint": {"every": 4}}))
    assert result["best"] is not None
    lm = load_lm(tmp_path / "sft")
    assert lm.chat and lm.tokenizer.vocab_size == lm.model.config.vocab_size == 260  # three role tokens added
    assert len(lm.generate([[{"role": "user", "content": "Is fever present?"}]], max_new_tokens=3)) == 1
    with torch.no_grad():
        assert lm.loglik([("Is fever present?", "yes")])[0] < 0
