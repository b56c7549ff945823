from slm.demo import PROMPTS, run
from slm.train.config import TrainConfig
from slm.train.trainer import train


def test_demo_generates_from_the_latest_checkpoint_and_reports_perplexity(tmp_path, data_dir, capsys):
    train(TrainConfig.from_dict({
        "out": str(tmp_path / "run"), "data": str(data_dir), "mixture": {"weights": {"clinical": 1.0}},
        "model": "tiny", "seq_len": 32, "micro_batch": 2, "global_batch": 2, "steps": 4, "tensorboard": False,
        "optim": {"warmup_steps": 1}, "checkpoint": {"every": 2}, "eval": {"batches": 1, "mixture": {"weights": {"heldout": 1.0}}}}))
    result = run(tmp_path / "run")
    assert all(t.startswith(p) for t, p in zip(result["texts"]["greedy"], PROMPTS))
    assert result["perplexity"]["steps"] == 4 and result["perplexity"]["before"] > 1
    assert "held-out perplexity" in capsys.readouterr().out
