import json
from slm.train.config import TrainConfig
from slm.train.trainer import train
from tests.test_train import run_config

def test_rollbacks_counter(tmp_path, data_dir, monkeypatch):
    from slm.train import trainer as tr
    real, calls = tr.Trainer._micro_loss, []
    def spiky(self, batch, sync):
        calls.append(1)
        loss = real(self, batch, sync)
        # every step from step 7 onwards spikes
        return loss * 100 if len(calls) >= 15 else loss
    monkeypatch.setattr(tr.Trainer, "_micro_loss", spiky)
    config = run_config(tmp_path, data_dir, steps=14, spike={"action": "rollback", "window": 4, "factor": 2.0, "max_rollbacks": 2})
    result = train(TrainConfig.from_dict(config))
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rb = [r for r in records if r["kind"] == "rollback"]
    print("rollbacks:", len(rb), "micro calls:", len(calls), result)
    assert len(rb) <= 2
