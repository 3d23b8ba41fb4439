"""The deploy gate: absolute bounds, gain over the deployed version, and forgetting.

Pure functions over metric dicts, so every verdict can be explained in words and tested alone.
A version passes only when every check passes; the first version has no deployed baseline, so
only the absolute bounds apply (as TFX skips its change thresholds on the first run).
"""

from dataclasses import dataclass, field

GATE_METRICS = ("mAP", "AP50", "AP75", "AR100", "precision", "recall", "f1", "macro_f1")
PER_CLASS_METRICS = ("precision", "recall", "f1")
_EPSILON = 1e-9


class GatePolicyError(ValueError):
    pass


@dataclass(frozen=True)
class GatePolicy:
    min_metrics: dict[str, float] = field(default_factory=dict)
    min_gain: dict[str, float] = field(default_factory=dict)
    per_class_gain: bool = False
    max_forgetting: float | None = None
    min_edge_images: int = 1

    def __post_init__(self):
        for what, bounds in (("minimum", self.min_metrics), ("minimum gain", self.min_gain)):
            if not isinstance(bounds, dict):
                raise GatePolicyError(f"{what}: expected a mapping of metric name to number")
            for name, value in bounds.items():
                if name not in GATE_METRICS:
                    raise GatePolicyError(
                        f"{what}: unknown metric {name!r}; use one of {', '.join(GATE_METRICS)}"
                    )
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise GatePolicyError(f"{what} for {name}: expected a number, got {value!r}")
        if self.per_class_gain:
            unknown = set(self.min_gain) - set(PER_CLASS_METRICS)
            if unknown:
                raise GatePolicyError(
                    f"per-class gains exist for {', '.join(PER_CLASS_METRICS)} only, "
                    f"not {', '.join(sorted(unknown))}"
                )
        if self.max_forgetting is not None and self.max_forgetting < 0:
            raise GatePolicyError("maximum forgetting must be 0 or more (a drop of mAP)")
        if self.min_edge_images < 1:
            raise GatePolicyError("the fewest edge evaluation images must be 1 or more")


@dataclass(frozen=True)
class GateCheck:
    passed: bool
    text: str


@dataclass(frozen=True)
class GateVerdict:
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [check.text for check in self.checks if not check.passed]

    def as_json(self) -> list[dict]:
        return [{"passed": c.passed, "text": c.text} for c in self.checks]


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _compare(value: float, bound: float) -> tuple[bool, str]:
    passed = value >= bound - _EPSILON
    return passed, "≥" if passed else "<"


def judge(
    policy: GatePolicy,
    *,
    edge: dict | None,
    regression: dict | None,
    baseline_edge: dict | None = None,
    baseline_regression: dict | None = None,
    has_baseline: bool = False,
    edge_images: int | None = None,
) -> GateVerdict:
    """`edge_images`: how many images `edge` was measured on (None: not known, not checked)."""
    checks: list[GateCheck] = []
    judged, judged_baseline = edge, baseline_edge
    if edge is None:
        judged, judged_baseline = regression, baseline_regression
        checks.append(
            GateCheck(
                True, "No edge evaluation samples yet: bounds and gains use the regression set"
            )
        )
    elif edge_images is not None and edge_images < policy.min_edge_images:
        judged, judged_baseline = regression, baseline_regression
        too_few = (
            f"Only {_images(edge_images)} in the edge evaluation set, fewer than the "
            f"{policy.min_edge_images} the gate judges on"
        )
        if regression is None:
            return GateVerdict(
                (GateCheck(False, f"{too_few}, and no regression set: label more eval samples"),)
            )
        checks.append(GateCheck(True, f"{too_few}: bounds and gains use the regression set"))
    elif edge_images is not None:
        checks.append(GateCheck(True, f"Judged on {_images(edge_images)} of the edge set"))
    if judged is None:
        return GateVerdict((GateCheck(False, "No evaluation data: label some samples first"),))

    for name, bound in policy.min_metrics.items():
        passed, sign = _compare(judged[name], bound)
        checks.append(GateCheck(passed, f"{name} {judged[name]:.3f} {sign} {bound:.3f}"))

    if not has_baseline:
        checks.append(GateCheck(True, "First version: no deployed baseline to compare with"))
        return GateVerdict(tuple(checks))

    for name, bound in policy.min_gain.items():
        gain = judged[name] - judged_baseline[name]
        passed, sign = _compare(gain, bound)
        checks.append(GateCheck(passed, f"Δ{name} {gain:+.3f} {sign} {bound:+.3f}"))
        if policy.per_class_gain:
            baseline_classes = judged_baseline.get("per_class", {})
            for class_name, values in judged.get("per_class", {}).items():
                if class_name not in baseline_classes:
                    continue
                gain = values[name] - baseline_classes[class_name][name]
                passed, sign = _compare(gain, bound)
                checks.append(
                    GateCheck(passed, f"Δ{name}[{class_name}] {gain:+.3f} {sign} {bound:+.3f}")
                )

    if policy.max_forgetting is not None and regression is not None and baseline_regression:
        change = regression["mAP"] - baseline_regression["mAP"]
        passed, sign = _compare(change, -policy.max_forgetting)
        checks.append(
            GateCheck(
                passed,
                f"ΔmAP on the regression set {change:+.3f} {sign} {-policy.max_forgetting:+.3f}",
            )
        )
    return GateVerdict(tuple(checks))
