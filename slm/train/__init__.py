"""Pretraining (report §2.4.1): `train.py` over `slm.train.trainer.train`."""
