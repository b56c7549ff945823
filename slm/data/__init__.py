"""The pretraining corpus pipeline (report §2.1): readers -> cleaning -> filters -> dedup ->
decontamination -> (quality) -> token shards, and the packed loader that reads them back.

`python -m slm.data.prepare --config configs/data/sample.yaml`; synthetic textbooks with
`python -m slm.data.synth`.
"""
