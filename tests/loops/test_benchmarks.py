"""Benchmark strategies: starting one, its leaderboard page and CSV, and "use this miner"."""

import csv
import io

import pytest
import yaml
from django.urls import reverse

from apps.jobs.models import Job, JobStatus
from apps.loops import benchmarks, services
from apps.loops.models import Loop

TINY = dict(
    rounds=1,
    stream_per_round=4,
    budget_ratio=0.5,
    input_size=64,
    initial_images=8,
    initial_steps=2,
    finetune_steps=2,
    gate_images=4,
    test_images=4,
)


@pytest.fixture
def enqueued(monkeypatch):
    from apps.jobs import services as jobs

    sent = []
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: sent.append(args))
    return sent


def row(strategy, f1, str_, seed=0, round_=1, labels=2):
    return {
        "seed": seed,
        "strategy": strategy,
        "round": round_,
        "labels": labels,
        "edge_f1": f1,
        "edge_mAP": f1 / 2,
        "edge_AP50": f1,
        "samples_transfer_ratio": str_,
        "forgetting": 0.01,
        "replaced": True,
    }


def finished_benchmark(loop, rows) -> Job:
    from worker.ml.rounds import leaderboard

    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    return Job.objects.create(
        kind=benchmarks.KIND,
        scope=loop.job_scope,
        trigger="manual",
        status=JobStatus.SUCCEEDED,
        params={"loop_id": loop.pk, "strategies": strategies, "seeds": [0], "settings": TINY},
        result={"rows": rows, "leaderboard": leaderboard(rows)},
    )


ROWS = [
    row("Threshold", 0.6, 0.2),
    row("Random", 0.5, 0.2),
    row("Coverage", 0.6, 0.1),
    row("All", 0.8, 0.9, labels=4),
    row("Coverage", 0.3, 0.1, round_=0),
]


def test_start_queues_a_benchmark_job_on_the_train_queue(
    tiny_loop, admin_user, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = benchmarks.start_benchmark(
            tiny_loop,
            user=admin_user,
            strategies=["Coverage", "Random"],
            seeds=[1, 0],
            settings=TINY,
        )
    assert job.kind == "benchmark" and job.scope == tiny_loop.job_scope
    assert job.params == {
        "loop_id": tiny_loop.pk,
        "strategies": ["Coverage", "Random"],
        "seeds": [0, 1],
        "settings": TINY,
    }
    assert enqueued == [(job.pk, "ilportal.benchmark_strategies", "train")]


@pytest.mark.parametrize(
    "strategies, seeds, round_settings, message",
    [
        (["Nope"], [0], TINY, "unknown strategies"),
        ([], [0], TINY, "unknown strategies"),
        (["Random"], [], TINY, "seeds"),
        (["Random"], [-1], TINY, "seeds"),
        (["Random"], list(range(9)), TINY, "seeds"),
        (["Random"], [0], {**TINY, "rounds": 50}, "rounds must lie"),
        (["Random"], [0], {**TINY, "input_size": 100}, "multiple of 32"),
        # The FPN needs >= 64: a job with 32 used to be queued and then always fail.
        (["Random"], [0], {**TINY, "input_size": 32}, r"input_size must lie in \[64, 256\]"),
        # 0.01 x 40 = 0.4: no label per round, and the job used to crash in its first round.
        (
            ["Random"],
            [0],
            {**TINY, "budget_ratio": 0.01, "stream_per_round": 40},
            "gives 0 labels per round; at least 1 is needed",
        ),
        # numpy takes seeds below 2**32, and a run derives seed * 100 + round from its seed.
        (["Random"], [2**32], TINY, r"seeds: each must lie in \[0, 42949672\]"),
        (["Random"], [0, 42949673], TINY, r"seeds: each must lie in \[0, 42949672\]"),
        (["Random"], [0], {**TINY, "budget_ratio": 2.0}, "budget_ratio"),
        (["Random"], [0], {**TINY, "bogus": 1}, "Unknown benchmark setting"),
    ],
)
def test_bad_requests_start_nothing(
    tiny_loop, admin_user, enqueued, strategies, seeds, round_settings, message
):
    with pytest.raises(services.LoopError, match=message):
        benchmarks.start_benchmark(
            tiny_loop, user=admin_user, strategies=strategies, seeds=seeds, settings=round_settings
        )
    assert not Job.objects.exists() and not enqueued


def test_start_page_for_admins_only(tiny_loop, admin_user, viewer_user, client_for, enqueued):
    url = reverse("loops:benchmarks", args=[tiny_loop.pk])
    viewer = client_for(viewer_user)
    assert viewer.get(url).status_code == 200
    assert viewer.post(url, {"strategies": ["Random"], "seeds": "0"}).status_code == 403
    admin = client_for(admin_user)
    form = {"strategies": ["Coverage", "Random"], "seeds": "0 1", **TINY}
    response = admin.post(url, {**form, "seeds": "zero"})
    assert response.status_code == 200 and b"whole numbers" in response.content
    response = admin.post(url, form)
    job = Job.objects.get(kind="benchmark")
    assert response.status_code == 302
    assert response.url == reverse("loops:benchmark", args=[tiny_loop.pk, job.pk])
    # A second start while one runs goes to the running one.
    assert admin.post(url, form).url == response.url
    assert Job.objects.filter(kind="benchmark").count() == 1


@pytest.mark.parametrize(
    "change, error",
    [
        ({"input_size": 32}, "Ensure this value is greater than or equal to 64."),
        (
            {"budget_ratio": 0.01, "stream_per_round": 40},
            "0.01 × 40 images streamed per round gives 0 labels per round; at least 1 is needed",
        ),
        ({"seeds": "0 4294967296"}, "got 4294967296 (numpy&#x27;s seeds end at 2**32 - 1"),
    ],
)
def test_the_form_refuses_settings_the_job_would_fail_on(
    tiny_loop, admin_user, client_for, enqueued, change, error
):
    url = reverse("loops:benchmarks", args=[tiny_loop.pk])
    form = {"strategies": ["Random"], "seeds": "0", **TINY, **change}
    response = client_for(admin_user).post(url, form)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Job.objects.exists() and not enqueued


def test_the_forms_bounds_are_settings_a_job_runs_with(tiny_loop, admin_user, enqueued):
    """Every bound the form offers passes the service and the FPN the job builds."""
    from apps.loops.benchmark_views import BenchmarkForm
    from worker.ml.fpn import FPNModel
    from worker.ml.rounds import fpn_param

    form = BenchmarkForm()
    assert form.fields["input_size"].min_value == fpn_param("input_size").minimum == 64
    for name, (low, high) in benchmarks.LIMITS.items():
        assert (form.fields[name].min_value, form.fields[name].max_value) == (low, high)
        for value in (low, high):
            benchmarks.check_request(["Random"], [0], {**TINY, name: value})
    for size in benchmarks.LIMITS["input_size"]:
        FPNModel(input_size=size, **benchmarks._model_params(tiny_loop))


def test_loop_page_links_to_benchmarks(tiny_loop, admin_user, client_for):
    page = client_for(admin_user).get(reverse("loops:detail", args=[tiny_loop.pk]))
    assert reverse("loops:benchmarks", args=[tiny_loop.pk]).encode() in page.content


def test_leaderboard_page_and_csv_are_ranked_f1_then_str(tiny_loop, admin_user, client_for):
    job = finished_benchmark(tiny_loop, ROWS)
    client = client_for(admin_user)
    page = client.get(reverse("loops:benchmark", args=[tiny_loop.pk, job.pk])).content.decode()
    order = [page.index(f'data-strategy="{name}"') for name in ("All", "Coverage", "Threshold")]
    assert order == sorted(order)
    assert page.index('data-strategy="Threshold"') < page.index('data-strategy="Random"')
    assert 'data-testid="use-Coverage"' in page and 'data-testid="use-All"' not in page

    response = client.get(reverse("loops:benchmark_csv", args=[tiny_loop.pk, job.pk]))
    assert response["Content-Type"] == "text/csv"
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0][:2] == ["rank", "strategy"]
    assert [line[1] for line in lines[1:5]] == ["All", "Coverage", "Threshold", "Random"]
    coverage = dict(zip(lines[0], lines[2], strict=True))
    assert coverage["f1"] == "0.6000" and coverage["STR"] == "0.1000"
    assert coverage["labels"] == "2" and coverage["rank"] == "2"
    assert len(lines) == 1 + 4 + 1 + 1 + len(ROWS)  # leaderboard, blank, round header, rows


def test_csv_neutralises_formulas_but_not_numbers(tiny_loop, admin_user, client_for):
    rows = [
        row("=1+1", 0.5, 0.2),
        row("\t=2+2", 0.4, 0.2),
        row("\r@SUM(A1)", 0.3, 0.2),
        {**row("Random", 0.2, 0.2), "forgetting": -0.25},
    ]
    job = finished_benchmark(tiny_loop, rows)
    response = client_for(admin_user).get(
        reverse("loops:benchmark_csv", args=[tiny_loop.pk, job.pk])
    )
    lines = list(csv.reader(io.StringIO(response.content.decode(), newline="")))
    assert [line[1] for line in lines[1:5]] == ["'=1+1", "'\t=2+2", "'\r@SUM(A1)", "Random"]
    assert lines[-1][ROW_FIELDS_INDEX["forgetting"]] == "-0.2500"


ROW_FIELDS_INDEX = {name: i for i, name in enumerate(benchmarks.ROW_FIELDS)}


def test_benchmark_of_another_loop_is_not_found(tiny_loop, admin_user, client_for):
    job = finished_benchmark(tiny_loop, ROWS)
    client = client_for(admin_user)
    assert (
        client.get(reverse("loops:benchmark", args=[tiny_loop.pk + 1, job.pk])).status_code == 404
    )
    other = Job.objects.create(kind="train", scope=tiny_loop.job_scope, trigger="manual")
    assert client.get(reverse("loops:benchmark", args=[tiny_loop.pk, other.pk])).status_code == 404


def test_use_this_miner_writes_a_valid_yaml(tiny_loop, admin_user, client_for):
    job = finished_benchmark(tiny_loop, ROWS)
    client = client_for(admin_user)
    response = client.post(
        reverse("loops:benchmark_use", args=[tiny_loop.pk, job.pk]), {"strategy": "Coverage"}
    )
    assert response.status_code == 302
    loop = Loop.objects.get(pk=tiny_loop.pk)
    config = services.check_algorithm_yaml(loop.algorithm_yaml, loop.dataset.class_names)
    assert config.hard_example_mining.name == "Coverage"
    # The rest of the algorithm is kept.
    assert config.basemodel.hyperparameters["backbone_width"] == 4
    assert yaml.safe_load(loop.algorithm_yaml)["basemodel"]["hyperparameters"]["seed"] == 3


@pytest.mark.parametrize("strategy", ["All", "Random", "Nope", ""])
def test_use_this_miner_refuses_baselines_and_unranked(tiny_loop, admin_user, client_for, strategy):
    job = finished_benchmark(tiny_loop, ROWS)
    before = tiny_loop.algorithm_yaml
    response = client_for(admin_user).post(
        reverse("loops:benchmark_use", args=[tiny_loop.pk, job.pk]), {"strategy": strategy}
    )
    assert response.status_code == 302
    assert Loop.objects.get(pk=tiny_loop.pk).algorithm_yaml == before


def test_use_this_miner_needs_change_permission(tiny_loop, viewer_user, client_for):
    job = finished_benchmark(tiny_loop, ROWS)
    response = client_for(viewer_user).post(
        reverse("loops:benchmark_use", args=[tiny_loop.pk, job.pk]), {"strategy": "Coverage"}
    )
    assert response.status_code == 403


def test_use_miner_service_validates_like_the_settings_page(tiny_loop):
    # A loop whose YAML the settings page would now refuse: the miner write refuses too.
    Loop.objects.filter(pk=tiny_loop.pk).update(
        algorithm_yaml=tiny_loop.algorithm_yaml.replace("backbone_width: 4", "backbone_width: many")
    )
    loop = Loop.objects.get(pk=tiny_loop.pk)
    with pytest.raises(services.LoopError, match="backbone_width"):
        benchmarks.use_miner(loop, "Coverage")
    assert "Coverage" not in Loop.objects.get(pk=tiny_loop.pk).algorithm_yaml
    loop.algorithm_yaml = ""
    assert "Coverage" in benchmarks.use_miner(loop, "Coverage").algorithm_yaml


def test_a_cancel_stops_the_benchmark_from_inside_a_training(tiny_loop):
    """The job's progress raises JobCancelled once the job is cancelled; the trainings report to
    it, so a cancel does not wait for the round (or the initial model) to finish training."""
    from apps.jobs.runner import JobCancelled

    class CancelledDuringTraining:
        def __init__(self):
            self.messages, self.logged = [], []

        def update(self, percent, message="", **kwargs):
            self.messages.append(message)
            if message.startswith("training"):
                raise JobCancelled()

        def log(self, line):
            self.logged.append(line)

    job = Job.objects.create(
        kind=benchmarks.KIND,
        scope=tiny_loop.job_scope,
        trigger="manual",
        params={"loop_id": tiny_loop.pk, "strategies": ["Random"], "seeds": [0], "settings": TINY},
    )
    progress = CancelledDuringTraining()
    with pytest.raises(JobCancelled):
        benchmarks.run_benchmark(job, progress)
    assert progress.messages[-1].startswith("training: step ")  # raised inside train()
    assert not any("initial model" in m for m in progress.messages)  # it never finished
    assert progress.logged == []
