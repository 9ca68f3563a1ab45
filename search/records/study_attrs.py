"""The study's own attributes, typed: the only reader and writer of an Optuna study's user attributes
(a trial's go through `search.records.trial`). The keys are those older studies stored, so they still read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from fasternet_space.paired import (
    CALIBRATION_PREFIX,  # calibration:REFERENCE:CHANNELSxSIZE -> its Calibration
)
from search.records.values import finite_number

SETTING = "setting"  # what makes numbers comparable: budget, device, data, proxy budget, space (SearchConfig.setting)
PROXY_SETUP = "proxy_setup"  # the proxy's seed and held-out size (SearchConfig.proxy_setup)
SAMPLERS = "samplers"  # every sampler that added trials (analysis warns unless all were random)
SCREENED = "screened"  # how many screened candidates a two-stage search enqueued (set once)
BUDGET_MS = "budget_ms"  # a budget in reference units (1.2xT0) in ms: the ratio times the study's calibration
# A finished trial takes no new attributes in Optuna: confirmations (retrainings with other seeds, done
# after the search) are study attributes, one key per trial and seed, so concurrent writers never collide.
CONFIRM_PREFIX = "confirm:"
FIDELITY_PREFIX = "fidelity"  # fidelity:MULTIPLIER:TRIAL:SEED -> top-1, or "diverged: ..."
RANK_BY = "rank_by"  # what ranks trained candidates: "loss" or "top1" (absent: a study made before, by top-1)
PICK = "pick"  # the rule that picks best.yaml among the candidates tied with the best (the last one asked for)
RANK_SCORES = ("loss", "top1")
PICK_RULES = ("fastest", "best-score", "most-flops")


def write_new(study: optuna.Study, setting: dict[str, Any], proxy_setup: dict[str, Any], sampler: str,
              rank_by: str | None = None) -> None:
    """What the creator of a study records once (`rank_by` before the setting: a worker that waits for the
    setting then reads both)."""
    if rank_by is not None:
        study.set_user_attr(RANK_BY, rank_by)
    study.set_user_attr(SETTING, setting)
    study.set_user_attr(PROXY_SETUP, proxy_setup)
    study.set_user_attr(SAMPLERS, [sampler])


def setting(study: optuna.Study) -> dict[str, Any] | None:
    """The study's setting; None while its creator has not written it yet (or not a mapping)."""
    value = study.user_attrs.get(SETTING)
    return value if isinstance(value, dict) else None


def proxy_setup(study: optuna.Study) -> dict[str, Any]:
    """The proxy's seed and held-out size as stored ({} for studies made before they were)."""
    value = study.user_attrs.get(PROXY_SETUP)
    return value if isinstance(value, dict) else {}


def budget_ms(study: optuna.Study) -> float | None:
    """The latency budget the study was searched with, if any (in ms: a budget in reference units as its
    calibration made it)."""
    budget = (setting(study) or {}).get("budget_ms", study.user_attrs.get(BUDGET_MS))
    return float(budget) if isinstance(budget, int | float) and not isinstance(budget, bool) else None


def store_budget_ms(study: optuna.Study, value: float) -> None:
    study.set_user_attr(BUDGET_MS, value)


def samplers(study: optuna.Study) -> list[str] | None:
    """Every sampler that added trials; None for studies that did not record them."""
    value = study.user_attrs.get(SAMPLERS)
    return list(value) if isinstance(value, list) else None


def add_sampler(study: optuna.Study, sampler: str) -> None:
    """Records one more sampler on a resumed study (studies without the record are left without it)."""
    used = samplers(study)
    if used is not None and sampler not in used:
        study.set_user_attr(SAMPLERS, [*used, sampler])


def screened(study: optuna.Study) -> int:
    """How many screened candidates were enqueued (0: not a two-stage search, or not yet)."""
    value = study.user_attrs.get(SCREENED)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def mark_screened(study: optuna.Study, count: int) -> None:
    study.set_user_attr(SCREENED, count)


def calibration(study: optuna.Study, key: str) -> dict[str, Any] | None:
    """The stored calibration of a reference at one input (a `Calibration.to_dict()`), if any."""
    value = study.user_attrs.get(key)
    return value if isinstance(value, dict) else None


def store_calibration(study: optuna.Study, key: str, calibration: dict[str, Any]) -> None:
    study.set_user_attr(key, calibration)


def calibrations(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Every stored calibration, by key."""
    return {k: v for k, v in study.user_attrs.items() if k.startswith(CALIBRATION_PREFIX) and isinstance(v, dict)}


def rank_by(study: optuna.Study) -> str:
    """What ranks the study's trained candidates: "loss", or "top1" for studies made before it was stored."""
    value = study.user_attrs.get(RANK_BY)
    return value if value in RANK_SCORES else "top1"


def store_rank_by(study: optuna.Study, value: str) -> None:
    study.set_user_attr(RANK_BY, value)


def pick(study: optuna.Study) -> str | None:
    """The pick rule the study's last search asked for (None: never stored)."""
    value = study.user_attrs.get(PICK)
    return value if value in PICK_RULES else None


def store_pick(study: optuna.Study, value: str) -> None:
    study.set_user_attr(PICK, value)


@dataclass(frozen=True)
class SeedResult:
    """One training's held-out scores (older confirmations stored top-1 alone)."""

    top1: float
    loss: float | None = None  # mean cross-entropy, nats per image
    loss_sd: float | None = None  # per-image standard deviation of that cross-entropy


def store_confirmation(study: optuna.Study, number: int, seed: int, result: SeedResult) -> None:
    """Stores the held-out scores of trial `number` retrained with `seed`."""
    value = {"top1": result.top1, "loss": result.loss, "loss_sd": result.loss_sd}
    study.set_user_attr(f"{CONFIRM_PREFIX}{number}:{seed}", value)


def confirmations(study: optuna.Study) -> dict[int, dict[int, SeedResult]]:
    """trial number -> {seed: scores} of every stored confirmation (a bare number: an older top-1)."""
    found: dict[int, dict[int, SeedResult]] = {}
    for key, value in study.user_attrs.items():
        result = _seed_result(value) if key.startswith(CONFIRM_PREFIX) else None
        if result is not None:
            number, _, seed = key.removeprefix(CONFIRM_PREFIX).partition(":")
            if number.isdigit() and seed.lstrip("-").isdigit():
                found.setdefault(int(number), {})[int(seed)] = result
    return found


def _seed_result(value: Any) -> SeedResult | None:
    if finite_number(value) is not None:
        return SeedResult(float(value))
    if isinstance(value, dict) and finite_number(value.get("top1")) is not None:
        return SeedResult(float(value["top1"]), finite_number(value.get("loss")), finite_number(value.get("loss_sd")))
    return None


def fidelity_key(multiplier: int, number: int, seed: int) -> str:
    """The attribute holding one fidelity retraining's top-1 (multiplier 1: the short recipe)."""
    return f"{FIDELITY_PREFIX}:{multiplier}:{number}:{seed}"


def has_fidelity_result(study: optuna.Study, key: str) -> bool:
    return key in study.user_attrs


def store_fidelity_result(study: optuna.Study, key: str, top1: float | str) -> None:
    study.set_user_attr(key, top1)


def fidelity_results(study: optuna.Study) -> dict[tuple[int, int, int], Any]:
    """(multiplier, trial, seed) -> top-1, or a "diverged: ..." string, of every stored fidelity retraining."""
    results: dict[tuple[int, int, int], Any] = {}
    for key, value in study.user_attrs.items():
        parts = key.split(":")
        if len(parts) == 4 and parts[0] == FIDELITY_PREFIX and all(p.lstrip("-").isdigit() for p in parts[1:]):
            results[(int(parts[1]), int(parts[2]), int(parts[3]))] = value
    return results
