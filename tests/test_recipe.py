"""The published recipes (configs/recipes/) each run end to end on a tiny random model on CPU, with
their structure kept (continued pretraining, LoRA, stages, the evaluations) and only paths and
sizes made small, and write their evaluation table."""

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from slm.eval import registry
from slm.finetune import converters
from slm.recipe import RecipeConfig, run

RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs" / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipe-data")
    rows = [("Which drug lowers glucose?", ["Insulin", "Warfarin", "Digoxin", "Heparin"], "A"),
            ("Antidote for heparin?", ["Vitamin K", "Protamine", "Naloxone", "Flumazenil"], "B"),
            ("Cause of scurvy?", ["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"], "C")]
    (d / "medqa.jsonl").write_text("".join(json.dumps({"question": q, "options": dict(zip("ABCD", o)), "answer_idx": a}) + "\n"
                                           for q, o, a in rows))
    (d / "medmcqa.jsonl").write_text("".join(json.dumps({"question": q, "opa": o[0], "opb": o[1], "opc": o[2], "opd": o[3],
                                                         "cop": "ABCD".index(a) + 1}) + "\n" for q, o, a in rows))
    (d / "pubmedqa.json").write_text(json.dumps({str(i): {"QUESTION": q, "CONTEXTS": ["Context."], "final_decision": v}
                                                 for i, (q, _, _), v in zip(range(3), rows, ("yes", "no", "maybe"))}))
    mmlu = []
    for subject in converters.MMLU_MEDICAL:
        path = d / f"{subject}_test.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([q, *o, a] for q, o, a in rows)
        mmlu.append(str(path))
    chats = converters.convert_medqa([d / "medqa.jsonl"]).conversations
    converters.write_jsonl(chats * 4, d / "chat.jsonl")
    (d / "heldout.txt").write_text("発熱と咳嗽を認めた。\n\n血圧は正常であった。\n", encoding="utf-8")
    return {"medqa": [str(d / "medqa.jsonl")], "medmcqa": [str(d / "medmcqa.jsonl")],
            "pubmedqa": [str(d / "pubmedqa.json")], "mmlu": mmlu, "qa": [str(d / "chat.jsonl")],
            "perplexity": [str(d / "heldout.txt")], "chat": [str(d / "chat.jsonl")]}


def tiny(recipe: dict, base, data_dir, fixtures, out, seq_len: int = 192) -> dict:
    """The same recipe, small: paths to the fixtures, a few steps, short generations."""
    recipe = {**recipe, "base": str(base), "out": str(out)}
    small = {"seq_len": 32, "micro_batch": 2, "global_batch": 2, "steps": 2, "checkpoint": {"every": 2, "keep_last": 1}}
    if recipe.get("pretrain"):
        recipe["pretrain"] = {**recipe["pretrain"], **small, "data": str(data_dir), "mixture": {"weights": {"clinical": 1.0}},
                              "eval": {"every": 0, "batches": 1, "mixture": {"weights": {"heldout": 1.0}}}}
    if recipe.get("finetune"):
        ft = {**recipe["finetune"], **small, "seq_len": seq_len, "train_files": fixtures["chat"], "eval_files": fixtures["chat"],
              "eval_max_new_tokens": 4}
        if ft.get("stages"):
            ft["train_files"] = []
            ft["stages"] = [{**s, "train_files": fixtures["chat"], "steps": 2, "epochs": None} for s in ft["stages"]]
        recipe["finetune"] = ft
    recipe["evaluate"] = [small_step(e, fixtures) for e in recipe["evaluate"]]
    return recipe


def small_step(step: dict, fixtures) -> dict:
    """An evaluation step on the fixtures, with the few-shot and sampling counts cut down where it has them."""
    fields = {f.name for f in dataclasses.fields(registry.get(step["benchmark"]).options)}
    small = {"train": fixtures[step["benchmark"]] if step.get("train") else [], "shots": min(step.get("shots", 0), 1),
             "samples": min(step.get("samples", 1), 2), "max_new_tokens": 4}
    return {**step, "data": fixtures[step["benchmark"]], **{k: v for k, v in small.items() if k in fields}}


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_on_a_tiny_model_and_writes_its_table(path, slm_dir, data_dir, fixtures, tmp_path):
    published = yaml.safe_load(path.read_text())
    RecipeConfig.from_dict(published)  # the published config itself is valid
    config = RecipeConfig.from_dict(tiny(published, slm_dir, data_dir, fixtures, tmp_path / "out"))
    result = run(config)
    expected = ["base"] + (["pretrained"] if published.get("pretrain") else []) + (["finetuned"] if published.get("finetune") else [])
    assert list(result["models"]) == expected
    assert len(result["results"]) == len(published["evaluate"])
    table = (tmp_path / "out" / "table.md").read_text()
    for step in published["evaluate"]:
        assert step["benchmark"] in table
    assert all(label in table.splitlines()[0] for label in expected)
    if published.get("finetune", {}).get("stages"):
        stages = (tmp_path / "out" / "finetune" / "stages.md").read_text()
        assert all(s["name"] in stages for s in published["finetune"]["stages"])


def test_a_recipe_without_a_base_or_with_a_bad_field_fails_at_load():
    from slm.config import ConfigError

    published = yaml.safe_load(RECIPES[0].read_text())
    with pytest.raises(ConfigError, match="base"):
        RecipeConfig.from_dict({**published, "base": ""})
    with pytest.raises(ConfigError, match="pretrain"):
        RecipeConfig.from_dict({**published, "pretrain": {**published["pretrain"], "stepz": 3}})


def test_staged_recipe_trains_on_the_answers(slm_dir, data_dir, fixtures, tmp_path):
    published = yaml.safe_load((RECIPES[-1]).read_text())  # 004: staged LoRA
    run(RecipeConfig.from_dict(tiny(published, slm_dir, data_dir, fixtures, tmp_path / "out")))
    stages = [json.loads(line) for line in (tmp_path / "out" / "finetune" / "stages.jsonl").read_text().splitlines()]
    assert len(stages) == 3 and all(s["final_eval_loss"] > 0 for s in stages)  # the answers fit in the rows: there is a loss
    from slm.runs import RunExistsError

    with pytest.raises(RunExistsError, match="already holds a run"):  # a second run never mixes into the first
        run(RecipeConfig.from_dict(tiny(published, slm_dir, data_dir, fixtures, tmp_path / "out")))


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in RECIPES if "pretrain" not in yaml.safe_load(p.read_text())],
                         ids=lambda p: p.stem)
def test_fine_tuning_recipes_run_on_an_open_model_with_its_own_tokenizer(path, hf_dir, data_dir, fixtures, tmp_path):
    """The recipes' base models are transformers folders (Llama): a tiny one, its byte-level tokenizer."""
    published = yaml.safe_load(path.read_text())
    result = run(RecipeConfig.from_dict(tiny(published, hf_dir, data_dir, fixtures, tmp_path / "out", seq_len=512)))
    assert list(result["models"]) == ["base", "finetuned"]
    assert (tmp_path / "out" / "table.md").is_file()
