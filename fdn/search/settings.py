"""Which settings decide a search's results, and why a workdir refuses to resume with other ones.

A search checkpoint is only meaningful with the settings that produced it: resuming with another learning rate
or seed would silently mix two searches in one log. The checkpoint therefore stores the result-deciding
settings (every config key except `RUNTIME_KEYS`, flattened to dotted names) and their `fingerprint`; a resume
with different ones raises `SettingsMismatch`, one line naming the differing keys and what to do.
"""

from __future__ import annotations

import hashlib
import itertools
import json

from fdn.errors import UserError

# Settings that may change between sessions of one run without making its checkpoint meaningless (a key names
# itself and everything below it).
RUNTIME_KEYS = (
    "num_candidates",
    "log",
    "failures",
    "data.data_dir",
    "data.worker_count",
    "data.auto_prepare",
    "candidate.compilation_cache_dir",
    "reward.cache_dir",  # the latency model a search uses is copied into its workdir (fdn.search.budget)
    "parallel.workers",  # results depend on parallel.lag only (fdn.search.parallel)
    "teacher.train.log_every",
    "compile_during_setup",  # when the same programs compile (beside the teacher, or after it), not what they compute
)
_SHOWN = 6  # differing keys named in a SettingsMismatch message
# Result-deciding keys added after workdirs were written, with the value every search had before the key existed:
# a checkpoint without the key, resumed with that value, is the same search (and must not be refused).
ADDED_KEYS = {"task": "segmentation", "candidate.precision": "float32"}


class SettingsMismatch(UserError, ValueError):
    """A workdir's checkpoint was written with other result-deciding settings than the ones given now."""


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists and tuples are values)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_runtime(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RUNTIME_KEYS)


def result_settings(config) -> dict:
    """The dotted settings that decide the search's results, JSON-normalised (tuples become lists)."""
    flat = flatten(json.loads(config.to_json_best_effort()))
    return {k: v for k, v in sorted(flat.items()) if not _is_runtime(k)}


def fingerprint(config_or_settings) -> str:
    """A short hash of `result_settings` (of a config, or of settings already flattened)."""
    settings = config_or_settings if isinstance(config_or_settings, dict) else result_settings(config_or_settings)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def differing_keys(saved: dict, now: dict) -> list[str]:
    """Dotted keys whose values differ (or exist on one side only), sorted."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k, "<unset>") != now.get(k, "<unset>"))


def _before_added_keys(settings: dict) -> list[dict]:
    """``settings`` as checkpoints from before some of `ADDED_KEYS` existed would hold them, where those keep their
    old value: one variant per subset of such keys (they were added at different times)."""
    old = [k for k in ADDED_KEYS if k in settings and settings[k] == ADDED_KEYS[k]]
    drops = (set(c) for r in range(len(old) + 1) for c in itertools.combinations(old, r))
    return [{k: v for k, v in settings.items() if k not in drop} for drop in drops]


def check_same(saved: dict | None, saved_fingerprint: str | None, now: dict, where) -> None:
    """Raises `SettingsMismatch` unless the checkpoint's settings are ``now``'s (or were, before a key of
    `ADDED_KEYS` existed, ``now``'s with that key at its old value).

    ``saved`` is None for checkpoints that stored only a fingerprint; their message cannot name the keys. Where
    ``saved`` is known, keys that have become `RUNTIME_KEYS` since it was written are dropped from it first, so a
    key found not to decide results can join them without refusing the workdirs written before.
    """
    if saved is not None:
        saved = {k: v for k, v in saved.items() if not _is_runtime(k)}
        saved_fingerprint = fingerprint(saved)
    if not saved_fingerprint or saved_fingerprint in {fingerprint(s) for s in _before_added_keys(now)}:
        return
    if saved is None:
        what = f"fingerprint {saved_fingerprint} != {fingerprint(now)}"
    else:
        keys = differing_keys(saved, now)
        shown = ", ".join(
            f"{k} ({_short(saved.get(k, '<unset>'))} -> {_short(now.get(k, '<unset>'))})" for k in keys[:_SHOWN]
        )
        what = shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")
    raise SettingsMismatch(
        f"the search in {where} was run with other search settings: {what}; use a new --workdir, or the original "
        f"settings (between sessions only these may change: {', '.join(RUNTIME_KEYS)})"
    )


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
