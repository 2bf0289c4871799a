"""The search's live progress line (tqdm): candidates done, the stage in flight, best reward, timings."""

from __future__ import annotations


def progress_bar(config, counter: int, progress: bool | None):
    """A tqdm bar starting at ``counter`` candidates, or None when ``progress`` (default ``config.log.progress``)
    is off."""
    if progress is None:
        progress = config.log.progress
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=config.num_candidates, initial=counter, unit="cand", dynamic_ncols=True, desc="search", smoothing=0.1
    )


def set_stage(bar, index, stage, best) -> None:
    if bar is not None:
        bar.set_postfix_str(f"cand {index} stage {stage} best {best:.4f}", refresh=True)


def after_candidate(bar, record, best) -> None:
    if bar is None:
        return
    s = record["seconds"]
    status = "failed" if record["failure"] else ("stopped" if record["stopped_early"] else "done")
    bar.update(1)
    rates = " ".join(f"{k[-1]}:{v:.1f}" for k, v in record.get("steps_per_s", {}).items())
    bar.set_postfix_str(
        f"cand {record['index']} {status} r {record['reward']:.4f} best {best:.4f} "
        f"{s['total']:.1f}s (compile {s['compile']:.1f}s) steps/s {rates or '-'}",
        refresh=True,
    )
