"""Helpers shared by the benchmark scripts: what machine and command produced a result."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def device_parser(doc: str):
    """The options the GPU benchmarks share: --preset, --device (cuda when there is one) and --out."""
    import argparse

    import torch

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ncvc-slm-1b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path)
    return p


def device_setup(args):
    """(device, dtype, device name): bf16 on a GPU, float32 on CPU (bf16 matmuls are slow there)."""
    import torch

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return device, dtype, name
