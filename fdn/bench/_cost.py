"""What a compiled program costs per step by XLA's own count, and how close a measured step comes to the device.

``program_cost(compiled)`` reads ``compiled.cost_analysis()`` (XLA's HLO cost analysis of the optimised
program): FLOPs and bytes accessed. Two properties of that count matter for reading the figures:

* A ``while`` loop's body is counted **once** (XLA does not know the trip count; checked on jax 0.10.2,
  where a ``lax.scan`` of 1 and of 5 matmuls report the same FLOPs). The trainer's stage-1 program is
  ``epochs x lax.scan(steps)``, so its count is one step's (plus one epoch's shuffle and Polyak write-back):
  the per-step figure, not the program's total.
* A conditional counts its costliest branch.

So the per-genotype programs' figures are exact per step, and the universal programs' (``fdn.candidate.programs``)
are not figures of the step at all: their decoder is itself a ``lax.scan`` over 9 cell jobs of a ``lax.scan``
over 7 slots, each counted once (one slot of one job), with ``lax.switch`` over ops and levels at the costliest
branch. They understate the step (search_a at batch 1, crop 32: universal 0.09 GFLOP, per-genotype 0.12), so
compare an interpreter's step time with the per-genotype program's count for the same genotype instead.

``DEVICE_PEAKS`` holds vendors' datasheet peaks for the accelerators fdn is benchmarked on; a device not
listed (every CPU) has no peak and its fractions are None.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DevicePeak:
    """Dense peaks of one device: TFLOP/s at float32 (no tensor cores) and bfloat16 (tensor cores), TB/s of HBM."""

    name: str
    f32_tflops: float
    bf16_tflops: float
    hbm_tbps: float
    source: str


# Substrings of ``jax.Device.device_kind`` (lower case) -> peaks; the first match wins, so the more specific
# spellings come first. Sources: NVIDIA's H100 (SXM5), H200 and A100 datasheets; dense (not 2:4 sparse) rates.
DEVICE_PEAKS: tuple[tuple[str, DevicePeak], ...] = (
    (
        "h200",
        DevicePeak("H200", 67.0, 989.0, 4.8, "NVIDIA H200 datasheet (SXM: FP32 67, BF16 dense 989 TFLOP/s, 4.8 TB/s)"),
    ),
    (
        "h100 pcie",
        DevicePeak(
            "H100 PCIe", 51.0, 756.0, 2.0, "NVIDIA H100 datasheet (PCIe: FP32 51, BF16 dense 756 TFLOP/s, 2.0 TB/s)"
        ),
    ),
    (
        "h100",
        DevicePeak(
            "H100 SXM", 67.0, 989.0, 3.35, "NVIDIA H100 datasheet (SXM5: FP32 67, BF16 dense 989 TFLOP/s, 3.35 TB/s)"
        ),
    ),
    (
        "a100 80gb pcie",
        DevicePeak(
            "A100 80GB PCIe",
            19.5,
            312.0,
            1.935,
            "NVIDIA A100 datasheet (80GB PCIe: FP32 19.5, BF16 312 TFLOP/s, 1.935 TB/s)",
        ),
    ),
    (
        "a100-sxm4-80gb",
        DevicePeak(
            "A100 80GB SXM",
            19.5,
            312.0,
            2.039,
            "NVIDIA A100 datasheet (80GB SXM: FP32 19.5, BF16 312 TFLOP/s, 2.039 TB/s)",
        ),
    ),
)


def peak_of(device_kind: str) -> DevicePeak | None:
    """The peaks of a device by its ``device_kind`` (e.g. 'NVIDIA H100 80GB HBM3'), or None if not known."""
    kind = device_kind.lower()
    return next((peak for key, peak in DEVICE_PEAKS if key in kind), None)


def program_cost(compiled) -> dict:
    """``{'flops', 'bytes'}`` of one run of a compiled program by XLA's count (None where XLA gives none)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001  (some backends do not implement it; the bench still prints times)
        analysis = None
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
        analysis = analysis[0] if analysis else None
    if not analysis:
        return {"flops": None, "bytes": None}
    flops, nbytes = analysis.get("flops"), analysis.get("bytes accessed")
    return {
        "flops": float(flops) if flops is not None else None,
        "bytes": float(nbytes) if nbytes is not None else None,
    }


def achieved(cost: dict, seconds_per_step: float | None, peak: DevicePeak | None) -> dict:
    """TFLOP/s and GB/s of a step of ``cost`` run in ``seconds_per_step``, and their fractions of ``peak``.

    Fractions of FLOPs are given against both the float32 and the bfloat16 peak (fdn trains in float32, which
    XLA may run on tensor cores as TF32); a missing figure or peak gives None.
    """

    def rate(amount, scale):
        return amount / seconds_per_step / scale if amount is not None and seconds_per_step else None

    tflops, gbps = rate(cost.get("flops"), 1e12), rate(cost.get("bytes"), 1e9)

    def frac(value, top):
        return value / top if value is not None and peak is not None else None

    return {
        "tflops": tflops,
        "gbps": gbps,
        "of_f32_peak": frac(tflops, peak.f32_tflops if peak else None),
        "of_bf16_peak": frac(tflops, peak.bf16_tflops if peak else None),
        "of_hbm_peak": frac(gbps, peak.hbm_tbps * 1e3 if peak else None),
    }
