"""The gate's models, in one place: the command lines' choices, the settings' pattern and the
result's `model` come from here. `seed` is the one-factor model's former name, kept as an alias on
every entry point."""

from __future__ import annotations

from typing import Literal

ModelName = Literal["curve", "funnel", "one-factor"]
MODELS: tuple[str, ...] = ("curve", "funnel", "one-factor")
MODEL_ALIASES: dict[str, str] = {"seed": "one-factor"}
MODEL_CHOICES: tuple[str, ...] = MODELS + tuple(MODEL_ALIASES)
ModelChoice = Literal["curve", "funnel", "one-factor", "seed"]
DEFAULT_MODEL = "curve"
MODEL_HELP = (
    "curve (default): a response curve fitted to the history (diminishing returns, weekday seasonality, trend); "
    "funnel: the history's constant conversions per dollar; one-factor (alias seed): the original one-factor formula"
)


def canonical_model(name: str) -> str:
    """The canonical name of a model or its alias; ValueError for an unknown one."""
    name = MODEL_ALIASES.get(name, name)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")
    return name
