"""`python -m slm.export` writes a folder that transformers, its pipelines and PEFT load as it is, with
the tokenizer, chat template, generation settings and a model card, and that slm reads back.
Driven through the real command line on a tiny model fitted a little to the sample corpus."""

import json

import pytest
import torch
import yaml

from conftest import SAMPLE_CORPUS, fake_run, small_config
from slm import hf, runs
from slm.chat import encode_chat
from slm.export import main, parse_size
from slm.generate import RECOMMENDED
from slm.lm import SLMAdapter, load_lm
from slm.lora import LoRAConfig, apply_lora, save_adapter
from slm.model import SLM

transformers = pytest.importorskip("transformers")
PROMPT = "糖尿病の患者に"
CHAT = [{"role": "system", "content": "医師として答えてください。"}, {"role": "user", "content": "高血圧の治療は？"},
        {"role": "assistant", "content": "降圧薬です。"}, {"role": "user", "content": "副作用は？"}]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))


def fitted(tok) -> SLM:
    """A tiny model fitted for a few steps to sample text, so greedy decoding says something."""
    torch.manual_seed(0)
    model = SLM(small_config(vocab_size=tok.vocab_size, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
                             bos_token_id=tok.bos_id))
    text = (SAMPLE_CORPUS / "disease_explanations.txt").read_text(encoding="utf-8")[:600]
    ids = torch.tensor([tok.encode(text, add_bos=True)[:128]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, tok):
    """An instruction-tuned run folder: its checkpoint marked chat, the best pointer, its config, and a
    sweep's evaluation table, as finetune.py and evaluate.py leave them."""
    root = tmp_path_factory.mktemp("runs")
    fitted(tok).save_pretrained(root / "model")
    run = fake_run(root / "sft", root / "model", tok, [10])
    checkpoint = runs.step_dir(runs.checkpoints_dir(run), 10)
    runs.mark_chat(checkpoint, "slm")
    runs.write_pointer(runs.checkpoints_dir(run), runs.BEST, checkpoint.name, metric="task", task=0.42)
    (run / "config.yaml").write_text(yaml.safe_dump({
        "out": str(run), "init_from": str(root / "base"), "train_files": ["data/train.jsonl"], "steps": 10,
        "seq_len": 256, "global_batch": 16, "micro_batch": 8, "neftune_alpha": 5.0,
        "optim": {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.01, "warmup_steps": 2, "schedule": "cosine"}}))
    table = run / "eval" / checkpoint.name / "jmed-llm" / "table.md"
    table.parent.mkdir(parents=True)
    table.write_text("| task | score |\n|---|---|\n| smdis | 0.31 (0.66) |\n")
    return run


def exported(run, out, *args) -> None:
    assert main(["--model", str(run), "--out", str(out), *args]) == 0


def slm_logits(run, ids) -> torch.Tensor:
    return SLM.from_pretrained(runs.resolve_model_dir(run)).eval()(ids).logits


def test_the_export_loads_in_transformers_with_its_files_and_identical_logits(chat_run, tmp_path):
    out = tmp_path / "export"
    exported(chat_run, out)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json",
            "tokenization_slm.py", "README.md"} <= names and "tokenizer.json" not in names
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([tokenizer(PROMPT, add_special_tokens=True).input_ids])
    torch.testing.assert_close(model(ids).logits, slm_logits(chat_run, ids), atol=1e-5, rtol=1e-5)
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation == {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                          "pad_token_id": tokenizer.pad_token_id, **RECOMMENDED}
    assert transformers.GenerationConfig.from_pretrained(out).top_p == RECOMMENDED["top_p"]
    head = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---")[1])
    assert "base_model" not in head  # the base is a local checkpoint, no Hub id: named in the text only


def test_the_chat_template_gives_slms_ids_and_a_pipeline_decodes_greedily_as_slm(chat_run, tmp_path, tok):
    out = tmp_path / "export"
    exported(chat_run, out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    for prompt in (False, True):
        messages = CHAT if prompt else CHAT[:3]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt, return_dict=False)
        assert list(ids) == encode_chat(tok, messages, add_generation_prompt=prompt).input_ids
    pipe = transformers.pipeline("text-generation", model=str(out), trust_remote_code=True)
    model = SLM.from_pretrained(runs.resolve_model_dir(chat_run)).eval()
    prompt_ids = tok.encode(PROMPT, add_bos=True)
    # Plain greedy, and greedy under the export's repetition penalty (generation_config.json's, as
    # transformers applies it unless told otherwise): both as slm's generate decodes.
    for penalty in (1.0, RECOMMENDED["repetition_penalty"]):
        text = pipe(PROMPT, do_sample=False, max_new_tokens=12, repetition_penalty=penalty,
                    return_full_text=False)[0]["generated_text"]
        new = model.generate([prompt_ids], max_new_tokens=12, repetition_penalty=penalty)[0, len(prompt_ids):]
        assert text == tok.decode(new.tolist(), skip_special_tokens=True), penalty
    # A conversation through the pipeline: its chat template, then greedy decoding, as slm answers it.
    reply = pipe(CHAT, do_sample=False, max_new_tokens=12, repetition_penalty=1.0)[0]["generated_text"][-1]
    chat_ids = encode_chat(tok, CHAT, add_generation_prompt=True).input_ids
    new = model.generate([chat_ids], max_new_tokens=12)[0, len(chat_ids):]
    assert reply == {"role": "assistant", "content": tok.decode(new.tolist(), skip_special_tokens=True)}


def test_a_sharded_export_loads_with_identical_logits_and_reads_back_into_slm(chat_run, tmp_path):
    out = tmp_path / "sharded"
    exported(chat_run, out, "--max-shard-size", "200KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (out / "model.safetensors").exists()
    ids = torch.tensor([[2, 40, 41, 42, 43]])
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(model(ids).logits, slm_logits(chat_run, ids), atol=1e-5, rtol=1e-5)
    back = hf.load(out).eval()  # the reverse direction: an export is an init_from too
    torch.testing.assert_close(back(ids).logits, slm_logits(chat_run, ids), atol=1e-5, rtol=1e-5)
    again = tmp_path / "again"
    back.save_pretrained(again)
    torch.testing.assert_close(SLM.from_pretrained(again)(ids).logits, slm_logits(chat_run, ids), atol=1e-5, rtol=1e-5)


def test_evaluation_reads_an_export_as_slm_with_its_tokenizer_and_chat(chat_run, tmp_path, tok):
    out = tmp_path / "export"
    exported(chat_run, out)
    lm = load_lm(out)  # what evaluate.py --model <export> loads: slm's model, tokenizer and chat template
    original = load_lm(chat_run)
    assert isinstance(lm, SLMAdapter) and lm.chat and original.chat
    assert lm.encode_prompt(CHAT) == original.encode_prompt(CHAT) == encode_chat(tok, CHAT, True).input_ids
    ids = torch.tensor([lm.encode_prompt(CHAT)])
    torch.testing.assert_close(lm.model(ids).logits, original.model(ids).logits, atol=1e-5, rtol=1e-5)


def evaluation(folder, model, row):
    """An evaluate.py result folder (its --out) as it leaves it: table.md, metrics.json naming the model."""
    folder.mkdir(parents=True)
    (folder / "table.md").write_text(f"| task | score |\n|---|---|\n{row}\n", encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps({"settings": {"model": model}}), encoding="utf-8")
    return folder


def test_the_model_card_is_in_the_hubs_format_and_holds_the_runs_record(chat_run, tmp_path, capsys):
    out = tmp_path / "export"
    given = evaluation(tmp_path / "elsewhere" / "jmed", "step-0000010", "| crade | 0.12 (0.30) |")
    exported(chat_run, out, "--license", "apache-2.0", "--evaluation", str(given), "--base-model", "org/base")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| crade | 0.12 (0.30) |" in card and "token positions seen" in card
    other = evaluation(tmp_path / "other", "step-0000099", "| crade | 0.99 (0.99) |")  # another model's scores
    assert main(["--model", str(chat_run), "--out", str(tmp_path / "x"), "--evaluation", str(other)]) == 2
    assert "it evaluated step-0000099, not step-0000010" in capsys.readouterr().err and not (tmp_path / "x").exists()
    head = yaml.safe_load(card.split("---")[1])
    assert head["language"] == ["ja"] and head["license"] == "apache-2.0" and head["library_name"] == "transformers"
    assert head["pipeline_tag"] == "text-generation" and "medical" in head["tags"] and head["base_model"] == "org/base"
    assert "Parameters:" in card and "| smdis | 0.31 (0.66) |" in card and "chosen by task on the selection split: 0.420" in card
    assert "not a medical device" in card and "apply_chat_template" in card
    usage = card.split("```python\n")[-1].split("```")[0]  # the card's own example runs as it is
    exec(compile(usage, "README.md", "exec"), {"FOLDER": str(out), "print": lambda *a: None})


def test_an_occupied_out_is_refused_and_overwrite_replaces_an_export(chat_run, tmp_path, capsys):
    out = tmp_path / "export"
    exported(chat_run, out)
    assert main(["--model", str(chat_run), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (out / "stale.safetensors").write_text("x")  # an export's folder with a leftover: replaced whole
    exported(chat_run, out, "--overwrite")
    assert not (out / "stale.safetensors").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["--model", str(chat_run), "--out", str(other), "--overwrite"]) == 2
    assert (other / "mine.txt").read_text() == "keep" and "error: " in capsys.readouterr().err


def test_sizes_read_as_transformers_reads_them():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("200KB") == 200_000 and parse_size("2GiB") == 2 * 2**30
    with pytest.raises(ValueError, match="give a size such as"):
        parse_size("big")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tok):
    """A LoRA run on a base checkpoint, its adapter's B matrices non-zero so that it matters."""
    pytest.importorskip("peft")
    root = tmp_path_factory.mktemp("lora")
    base = root / "base"
    fitted(tok).save_pretrained(base)
    tok.save(base / "tokenizer")
    model = SLM.from_pretrained(base)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.05)
    run = root / "lora-run"
    checkpoint = runs.step_dir(runs.checkpoints_dir(run), 5)
    save_adapter(model, checkpoint)
    tok.save(checkpoint / "tokenizer")
    (checkpoint / "trainer_state").mkdir()
    (checkpoint / "trainer_state" / "trainer.json").write_text('{"step": 5}')
    (run / "config.yaml").write_text(yaml.safe_dump({"init_from": str(base), "train_files": ["x.jsonl"], "lora": True}))
    return run, base, model.eval()


def test_a_lora_run_exports_merged_or_as_a_peft_adapter_with_the_same_logits(lora_run, tmp_path):
    from peft import PeftModel

    run, base, lora_model = lora_run
    ids = torch.tensor([[2, 40, 41, 42, 43]])
    expected = lora_model(ids).logits
    exported(run, tmp_path / "merged")
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=1e-5)
    exported(base, tmp_path / "base")
    exported(run, tmp_path / "adapter", "--adapter-only")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    peft_model = PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                           tmp_path / "adapter").eval()
    torch.testing.assert_close(peft_model(ids).logits, expected, atol=1e-5, rtol=1e-5)
    card = (tmp_path / "adapter" / "README.md").read_text(encoding="utf-8")
    assert "library_name: peft" in card
    usage = card.split("```python\n")[-1].split("```")[0]  # the adapter card's example runs as it is
    exec(compile(usage, "README.md", "exec"), {"FOLDER": str(tmp_path / "adapter"),
                                               "BASE_EXPORT": str(tmp_path / "base"), "print": lambda *a: None})
    assert main(["--model", str(base), "--out", str(tmp_path / "x"), "--adapter-only"]) == 2
