"""The run folder: the one module that knows its layout. Everyone else asks here.

    runs/<name>/
      config.yaml  metrics.jsonl  loss.png          the resolved config, the JSONL log, the loss curve
      tokenizer/                                    fine-tuning: the base tokenizer with the chat tokens
      checkpoints/step-0000100/
          model.safetensors  config.json            the weights (or adapter_*.safetensors for LoRA)
          tokenizer/                                the tokenizer the model reads with
          trainer_state/trainer.json ...            optimizer, RNG, loader position, step (resume only)
          chat.json                                 instruction-tuned: prompts go through the chat template
      checkpoints/latest  checkpoints/best          pointers: JSON {"checkpoint": "step-0000100", ...}
      eval/<checkpoint>/<benchmark>/                a checkpoint sweep's evaluation cache

A checkpoint is complete once `trainer_state/trainer.json` exists: it is written last,
in a temporary folder that is renamed into place (`begin`, `commit`). Retention renames a
checkpoint out of the listing before deleting it, so a kill mid-delete never leaves a
half-deleted checkpoint listed. Pointers are replaced atomically. A fresh run never starts in
a folder that holds another run (`claim`). Run folders written before pointers were JSON
(`latest` as the bare folder name) still load.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from slm.checkpoint import atomic_write
from slm.config import ConfigError

CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step-"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
TOKENIZER_DIR = "tokenizer"
TRAINER_STATE = "trainer_state"
TRAINER_INFO = "trainer.json"  # inside TRAINER_STATE, written last: a checkpoint's completeness mark
SELECTION = "selection.json"  # inside TRAINER_STATE: how instruction tuning judged the checkpoint
CHAT_MARKER = "chat.json"
LATEST, BEST = "latest", "best"
POINTERS = (LATEST, BEST)
EVAL_DIR = "eval"
CRASH_ENV = "SLM_FAULT_IN_CHECKPOINT"  # fault injection for tests: SIGKILL mid-save at this step


# ------------------------------------------------------------------ checkpoints of a run

def checkpoints_dir(run: str | Path) -> Path:
    return Path(run) / CHECKPOINTS


def step_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"{STEP_PREFIX}{step:07d}"


def is_complete(checkpoint: Path) -> bool:
    """Its trainer state is whole and its weights (a model or an adapter) are there."""
    return (checkpoint / TRAINER_STATE / TRAINER_INFO).is_file() and any(checkpoint.glob("*.safetensors"))


def trainer_info(checkpoint: Path) -> dict:
    """The trainer's record of a checkpoint ({"step", ...})."""
    return json.loads((checkpoint / TRAINER_STATE / TRAINER_INFO).read_text())


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Every complete step folder, oldest first (what a checkpoint sweep evaluates)."""
    return sorted(p for p in Path(checkpoints).glob(f"{STEP_PREFIX}*") if is_complete(p))


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint: the one `latest` names, else the highest complete step folder."""
    record = read_pointer(checkpoints, LATEST)
    if record is not None and is_complete(Path(checkpoints) / record["checkpoint"]):
        return Path(checkpoints) / record["checkpoint"]
    steps = complete_checkpoints(checkpoints)
    return steps[-1] if steps else None


def best_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint `best` names (instruction tuning's choice), or None."""
    record = read_pointer(checkpoints, BEST)
    return Path(checkpoints) / record["checkpoint"] if record is not None else None


# ------------------------------------------------------------------ pointers

def write_pointer(checkpoints: Path, name: str, checkpoint: str, **fields) -> None:
    """`latest` or `best`: {"checkpoint": <folder name>, ...fields}, replaced atomically."""
    if name not in POINTERS:
        raise ValueError(f"pointer must be one of {POINTERS}, not {name!r}")
    text = json.dumps({"checkpoint": checkpoint, **fields}) + "\n"
    atomic_write(Path(checkpoints) / name, lambda p: p.write_text(text))


def read_pointer(checkpoints: Path, name: str) -> dict | None:
    """The pointer's record, or None when there is none. A bare folder name (older runs) reads
    as {"checkpoint": name}."""
    path = Path(checkpoints) / name
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return json.loads(text) if text.startswith("{") else {"checkpoint": text}


# ------------------------------------------------------------------ writing a checkpoint

def begin(checkpoints: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of `step` (leftovers of a killed save or
    retention removed)."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    for stale in [*checkpoints.glob(".tmp-*"), *checkpoints.glob(".trash-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = checkpoints / f".tmp-{STEP_PREFIX}{step:07d}"
    (tmp / TRAINER_STATE).mkdir(parents=True)
    return tmp


def pending(checkpoints: Path, step: int) -> Path:
    """The temporary folder `begin` made for `step` (other ranks write into it too)."""
    return checkpoints / f".tmp-{STEP_PREFIX}{step:07d}"


def commit(tmp: Path, checkpoints: Path, step: int, keep_last: int, keep_every: int,
           protect: frozenset[str] = frozenset()) -> Path:
    """Make the temporary folder the checkpoint of `step`, point `latest` at it, apply retention
    (never to the folders named in `protect`, such as the best checkpoint so far)."""
    if os.environ.get(CRASH_ENV) == str(step):
        os.kill(os.getpid(), 9)  # the test's SIGKILL, after every file is written but before the rename
    final = step_dir(checkpoints, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_pointer(checkpoints, LATEST, final.name)
    if keep_last > 0:
        steps = sorted(checkpoints.glob(f"{STEP_PREFIX}*"))
        for old in steps[:-keep_last]:
            number = int(old.name[len(STEP_PREFIX):])
            if not (keep_every and number % keep_every == 0) and old.name not in protect:
                remove_checkpoint(old)
    return final


def remove_checkpoint(checkpoint: Path) -> None:
    """Out of the listing first (one rename), then deleted: a kill in between leaves a .trash-*
    folder that the next save removes, never a listed checkpoint with files missing."""
    trash = checkpoint.with_name(f".trash-{checkpoint.name}")
    os.replace(checkpoint, trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_selection(checkpoint: Path, record: dict) -> None:
    """How the checkpoint was judged, saved inside it before it is committed: a kill can never
    leave a committed checkpoint unjudged, and a resumed run reads every judgment back."""
    text = json.dumps(record, ensure_ascii=False) + "\n"
    atomic_write(checkpoint / TRAINER_STATE / SELECTION, lambda p: p.write_text(text, encoding="utf-8"))


def read_selection(checkpoint: Path) -> dict | None:
    path = checkpoint / TRAINER_STATE / SELECTION
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def selections(checkpoints: Path) -> list[tuple[Path, dict]]:
    """(checkpoint, its judgment) of every complete judged checkpoint, oldest first."""
    judged = [(checkpoint, read_selection(checkpoint)) for checkpoint in complete_checkpoints(checkpoints)]
    return [(checkpoint, judgment) for checkpoint, judgment in judged if judgment is not None]


# ------------------------------------------------------------------ starting a run

class RunExistsError(ConfigError):
    """A fresh run aimed at a folder that holds another run."""


def run_contents(out: Path) -> list[str]:
    """What of a run `out` holds (empty: nothing, the folder is free)."""
    out = Path(out)
    found = [name for name in (CONFIG_FILE, METRICS_FILE) if (out / name).is_file()]
    checkpoints = complete_checkpoints(checkpoints_dir(out)) if checkpoints_dir(out).is_dir() else []
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint(s)")
    elif checkpoints_dir(out).is_dir() and any(checkpoints_dir(out).iterdir()):
        found.append(CHECKPOINTS + "/")
    if out.is_dir():  # the stages of a staged run are runs one level down
        found += [f"{sub.name}/ (a run)" for sub in sorted(out.iterdir())
                  if sub.is_dir() and (sub / CONFIG_FILE).is_file()]
    return found


def claim(out: str | Path, *, resume: bool, overwrite: bool, move: bool = True) -> Path | None:
    """Check that a run may start in `out`: it holds no run, or `resume` continues it, or
    `overwrite` moves the old run aside (to `<out>.replaced-<time>`, returned). `move` False
    only checks (the ranks of a distributed run other than the first)."""
    out = Path(out)
    held = run_contents(out)
    if not held or resume:
        return None
    if not overwrite:
        raise RunExistsError(f"{out} already holds a run ({', '.join(held)}): pass --resume to continue it, or "
                             f"--overwrite to move it aside and start afresh")
    aside = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    if move:
        os.replace(out, aside)
    return aside


# ------------------------------------------------------------------ running out of space

class StorageError(OSError):
    """A write failed for lack of space; the message says where and what to do."""


LOW_SPACE = 64 * 2**20  # bytes free under which a failed write is taken for a full disk


@contextmanager
def writing(path: Path, what: str) -> Iterator[None]:
    """Name the problem when a write under `path` fails for lack of space. torch.save and
    safetensors report it as a RuntimeError ("[enforce fail at inline_container.cc]"), the
    standard library as ENOSPC."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if isinstance(e, OSError) and e.errno != errno.ENOSPC and not _low_space(path):
            raise
        if isinstance(e, RuntimeError) and not _low_space(path):
            raise
        free = shutil.disk_usage(_existing(path)).free
        raise StorageError(f"no space left on the device of {path} while writing {what} "
                           f"({free / 2**20:.0f} MiB free); the last complete checkpoint is intact: "
                           "free some space and run again with --resume") from e


def _existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _low_space(path: Path) -> bool:
    return shutil.disk_usage(_existing(path)).free < LOW_SPACE


# ------------------------------------------------------------------ the run's log

def read_log(run: str | Path, kind: str | None = None) -> list[dict]:
    """The records of the run's metrics.jsonl (of one `kind` if given). A torn last line (a
    crash mid-append) is left out: the run resumes from a checkpoint, which rewrites the log."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path} line {number}: not JSON (only a last line can be torn by a crash)") from None
    return [r for r in records if kind is None or r.get("kind") == kind]


# ------------------------------------------------------------------ what a checkpoint is

def mark_chat(checkpoint: Path, template: str) -> None:
    """Mark a checkpoint that answers in the chat format (instruction tuning writes it)."""
    (checkpoint / CHAT_MARKER).write_text(json.dumps({"template": template}, ensure_ascii=False) + "\n")


def is_chat(checkpoint: Path) -> bool:
    return (checkpoint / CHAT_MARKER).is_file()


def run_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to, or None for a model folder outside any run."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None


def run_config(run: Path) -> dict:
    """The run's resolved config (config.yaml), {} when it has none."""
    path = Path(run) / CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


# Fields a resumed run may change: how long it runs and what it logs or keeps, not what it computes.
RESUMABLE = ("steps", "log_every", "tensorboard", "checkpoint.every", "checkpoint.keep_last", "checkpoint.keep_every",
             "eval.every", "eval_every", "compile", "activation_checkpointing")


def config_changes(saved: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted fields whose values differ ("micro_batch: 2 -> 4")."""
    changes = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def check_resume(run: Path, config: dict) -> list[str]:
    """A resumed run's config against the one saved in its folder: a change to what the run
    computes is an error naming it; the allowed changes (RESUMABLE) are returned, to be reported."""
    saved = run_config(run)
    if not saved:
        return []
    changes = config_changes(saved, config)
    wrong = [c for c in changes if c.split(":")[0] not in RESUMABLE]
    if wrong:
        raise ConfigError(f"--resume: the config differs from the run's saved {Path(run) / CONFIG_FILE} in "
                         f"{'; '.join(wrong)}. Resume with the saved values, or start a new run (another out, "
                         f"or --overwrite)")
    return changes


def resolve_model_dir(path: str | Path) -> Path:
    """The checkpoint folder that `path` means: a model folder itself; a run folder (its `best`
    when instruction tuning chose one, else the newest complete checkpoint); or a `best` / `latest`
    pointer in a run's checkpoints folder (`runs/<name>/best` for short)."""
    path = Path(path)
    if not path.exists() and path.name in POINTERS and (checkpoints_dir(path.parent) / path.name).is_file():
        path = checkpoints_dir(path.parent) / path.name  # runs/<name>/best reads as runs/<name>/checkpoints/best
    if path.is_file() and path.name in POINTERS:
        return path.parent / read_pointer(path.parent, path.name)["checkpoint"]
    checkpoints = checkpoints_dir(path)
    if checkpoints.is_dir():
        found = best_checkpoint(checkpoints) or latest_checkpoint(checkpoints)
        if found is None:
            raise FileNotFoundError(f"{checkpoints} holds no complete checkpoint")
        return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model folder, run folder or checkpoint pointer")
    return path


def display_name(model_dir: Path) -> str:
    """<run>-<checkpoint> for a checkpoint of a run, else the folder's own name."""
    model_dir = Path(model_dir).resolve()
    run = run_of(model_dir)
    return f"{run.name}-{model_dir.name}" if run is not None else model_dir.name


def eval_dir(out: Path, checkpoint: Path, benchmark: str) -> Path:
    """Where a sweep caches one checkpoint's results on one benchmark (`out` default: <run>/eval)."""
    return Path(out) / checkpoint.name / benchmark
