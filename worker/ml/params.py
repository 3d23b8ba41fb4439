"""Declared hyperparameters of plugins, and their validation.

Every plugin class lists its hyperparameters in a ``HYPERPARAMETERS`` tuple of ``Param``; the YAML
loader and the constructors validate against it, so a typo or a wrong type fails early with the
field's name instead of being silently ignored (as Sedna's ``kwargs.get`` does).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from worker.ml.errors import ConfigError


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    help: str = ""

    def check(self, value: Any, where: str) -> Any:
        field = f"{where}.{self.name}" if where else self.name
        expected = self.type
        # YAML reads "1" as int where a float is expected; accept ints for floats, never bools.
        if isinstance(value, bool) and expected is not bool:
            raise ConfigError(f"expected {expected.__name__}, got bool {value!r}", field)
        if expected is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, expected):
            raise ConfigError(
                f"expected {expected.__name__}, got {type(value).__name__} {value!r}", field
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value!r}", field)
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"must be >= {self.minimum}, got {value!r}", field)
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"must be <= {self.maximum}, got {value!r}", field)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"must be one of {list(self.choices)}, got {value!r}", field)
        return value


def validate_params(schema: tuple[Param, ...], values: dict | None, where: str = "") -> dict:
    """Return a complete dict of hyperparameters: given values checked, missing ones defaulted."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"expected a mapping, got {type(values).__name__}", where or None)
    known = {param.name: param for param in schema}
    unknown = sorted(set(values) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key(s) {unknown}; known keys are {sorted(known)}",
            f"{prefix}{unknown[0]}",
        )
    checked = {}
    for name, param in known.items():
        # Defaults are copied so that no caller can mutate a shared default list.
        checked[name] = (
            param.check(values[name], where) if name in values else copy.deepcopy(param.default)
        )
    return checked
