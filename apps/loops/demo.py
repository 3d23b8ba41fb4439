"""The demo loop a new installation starts with, so a new user sees the loop work at once."""

from apps.datasets.models import Dataset
from apps.jobs.models import JobTrigger
from apps.loops import services
from apps.loops.models import Loop

DEMO_LOOP_NAME = "demo"
# Small and quick on 2 CPU cores (about a minute): the default FPN, fewer steps.
DEMO_STEPS = 300


def create_demo_loop(dataset: Dataset) -> Loop | None:
    """Creates the demo loop and starts training its initial model; None if it exists."""
    if Loop.objects.filter(name=DEMO_LOOP_NAME).exists():
        return None
    algorithm_yaml = services.default_algorithm_yaml(dataset.class_names).replace(
        "max_iteration: 600", f"max_iteration: {DEMO_STEPS}"
    )
    loop = services.create_loop(
        name=DEMO_LOOP_NAME,
        dataset=dataset,
        algorithm_yaml=algorithm_yaml,
        description="Created on the first start of the portal, on the demo dataset.",
        gate_min_metrics={"f1": 0.3},
        gate_min_gain={"f1": 0.01},
        gate_max_forgetting=0.02,
    )
    services.start_training(loop, trigger=JobTrigger.RULE, started_by="first start of the portal")
    return loop
