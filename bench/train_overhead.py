"""Training through a portal job vs calling the ML core directly, on the same data.

    .venv/bin/python bench/train_overhead.py [--images 64] [--steps 150] [--repeats 2]

Both sides train the same FPN with the same hyperparameters on the same synthetic images and
write a deployable archive (Keras model + LiteRT file). The job side also reads the images from
storage, freezes the snapshot, reports progress (database + channel layer), stores the artifacts
and registers the version: that is the overhead measured. It runs the job body in this process
(the Celery hop itself costs milliseconds) on SQLite and the embedded Redis in a temporary var/.
Prints one table; the ratio is what docs/benchmarks.md records.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="ilportal-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "ilportal.settings"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import django

    from ilportal import embedded_redis

    redis = embedded_redis.start(Path(os.environ["VAR_DIR"]))
    try:
        django.setup()
        run(args)
    finally:
        redis.terminate()


def run(args) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.datasets.demo import add_generated_samples
    from apps.datasets.services import create_dataset
    from apps.jobs import services as jobs
    from apps.jobs.runner import run_job
    from apps.loops import services
    from apps.loops.models import ModelVersion
    from apps.loops.training import run_training
    from worker.ml.fpn import FPNModel
    from worker.ml.synthetic import CLASS_NAMES, generate_samples

    hyperparameters = {"max_iteration": args.steps, "seed": 0, "replay_ratio": 0.0}
    yaml_text = "basemodel:\n  name: FPN\n  hyperparameters:\n" + "".join(
        f"    {key}: {value}\n" for key, value in hyperparameters.items()
    )
    dataset = create_dataset(name="bench", class_names=list(CLASS_NAMES))
    add_generated_samples(dataset, count=args.images, image_size=64, split="train")
    # 64 px images, as stored: the direct side gets the very same pixels.
    direct_data = generate_samples(args.images, "initial", seed=0, image_size=64)
    jobs._enqueue = lambda *a: None  # noqa: SLF001  (no broker: the body runs here)

    def direct() -> float:
        started = time.perf_counter()
        model = FPNModel(**hyperparameters)
        model.train(direct_data)
        with tempfile.TemporaryDirectory() as directory:
            model.save(os.path.join(directory, "model.zip"), include_litert=True)
        return time.perf_counter() - started

    def through_job(index: int) -> float:
        loop = services.create_loop(
            name=f"bench-{index}", dataset=dataset, algorithm_yaml=yaml_text,
            auto_evaluate=False, auto_deploy=False,
        )  # fmt: skip
        job = services.start_training(loop)
        started = time.perf_counter()
        run_job(job.pk, "bench", run_training)
        elapsed = time.perf_counter() - started
        assert ModelVersion.objects.filter(loop=loop).count() == 1
        return elapsed

    direct_times, job_times = [], []
    direct()  # warm-up: TensorFlow's first graph build is not what we compare
    for index in range(args.repeats):
        direct_times.append(direct())
        job_times.append(through_job(index))
    d, j = statistics.median(direct_times), statistics.median(job_times)
    print(f"images={args.images} steps={args.steps} repeats={args.repeats}")
    print(f"{'path':<28}{'median s':>10}{'runs':>24}")
    print(f"{'ML core train+save':<28}{d:>10.2f}{str([round(t, 2) for t in direct_times]):>24}")
    print(f"{'training job (portal)':<28}{j:>10.2f}{str([round(t, 2) for t in job_times]):>24}")
    print(f"{'ratio job / direct':<28}{j / d:>10.3f}")


if __name__ == "__main__":
    main()
