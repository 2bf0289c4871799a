"""What the report says about the run as a whole: its config, its progress, and how to train what it found.

The facts come from ``WORKDIR/config.json`` (written by the search when it starts) and the log; a workdir
without a readable config.json (copied logs, tests) still gets a report, with ``?`` where a fact is missing.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from types import SimpleNamespace

from fdn.data.catalog import resolve_data_dir

# The full-training config that matches a search's dataset (``fdn.train``'s configs); one place for the rule.
TRAIN_CONFIGS = {
    "fdn_shapes": "configs/demo_train.py",
    "voc_sbd": "configs/voc_train.py",
    "nyu_depth_v2_labeled": "configs/nyud_train.py",
}


# What a search's reward is when its ``task`` is not segmentation (whose reward is the paper's geometric mean of
# mIoU, mean accuracy and fwIoU): the report names it beside the figure.
REWARD_NAMES = {"pose": "PCK@0.5"}


def reward_name(config: dict) -> str | None:
    """The name of the search's reward for ``config``'s task, or None for the paper's segmentation reward."""
    return REWARD_NAMES.get(config.get("task", "segmentation"))


def read_config(workdir: Path) -> dict:
    """The search's config.json as a dict ({} when missing or unreadable)."""
    try:
        config = json.loads((Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def header(workdir: Path, config: dict, records: list[dict], summary: dict) -> dict[str, str]:
    """The page's header facts, in the order shown."""
    total = config.get("num_candidates")
    seconds = summary["seconds"]["total"]
    last = records[-1].get("time") if records else None
    return {
        "workdir": str(Path(workdir).absolute()),
        "agent": str(config.get("agent", records[-1].get("agent", "?") if records else "?")),
        "seed": str(config.get("seed", "?")),
        "dataset": str(config.get("data", {}).get("name", "?")),
        "candidates": f"{summary['candidates']} / {total if total is not None else '?'}",
        "best reward": f"{summary['best_reward']:.4f}" + (f" ({reward_name(config)})" if reward_name(config) else ""),
        "time in candidates": _duration(seconds),
        "last candidate": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "?",
    }


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def train_command(workdir: Path, config: dict, rank: int) -> str | None:
    """The ``python -m fdn.train`` line that trains the design at ``rank`` (``WORKDIR#rank``, see
    `fdn.train.genotype_source`) with the search's data and encoder; None for a dataset without a train config."""
    data = config.get("data", {})
    train_config = TRAIN_CONFIGS.get(data.get("name", "voc_sbd"))
    if train_config is None:
        return None
    workdir = Path(workdir).absolute()
    args = [
        "python",
        "-m",
        "fdn.train",
        f"--config={train_config}" + (f":{config['task']}" if reward_name(config) else ""),
        f"--config.genotype={workdir}#{rank}",
        f"--workdir={workdir / 'train' / f'top{rank}'}",
    ]
    data_dir = resolve_data_dir(
        SimpleNamespace(
            name=data.get("name", ""), data_dir=data.get("data_dir", ""), auto_prepare=data.get("auto_prepare", False)
        ),
        workdir,
    )
    if data_dir:
        args.append(f"--config.data.data_dir={data_dir}")
    encoder = config.get("encoder", {}).get("checkpoint")
    if encoder:
        args.append(f"--config.encoder.checkpoint={encoder}")
    return " ".join(shlex.quote(a) for a in args)
