"""Pages of "Benchmark strategies": start one on a loop, read its leaderboard, use the winner."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.jobs import services as jobs
from apps.jobs.models import ACTIVE_STATUSES
from apps.loops import benchmarks, services
from apps.loops.models import Loop

SMALLEST_INPUT, LARGEST_INPUT = benchmarks.LIMITS["input_size"]


def _setting(name: str, **kwargs) -> forms.IntegerField:
    """An integer setting of the benchmark, within its ``benchmarks.LIMITS``."""
    low, high = benchmarks.LIMITS[name]
    return forms.IntegerField(min_value=low, max_value=high, **kwargs)


class BenchmarkForm(forms.Form):
    strategies = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Random is the baseline every gain is measured against; All labels everything.",
    )
    seeds = forms.CharField(
        initial="0", help_text="Space-separated, e.g. '0 1 2'; every seed is a separate run."
    )
    # Bounds from benchmarks.LIMITS (input_size's lower one is the FPN's), so the form and the
    # service cannot drift apart.
    rounds = _setting("rounds", initial=3)
    stream_per_round = _setting("stream_per_round", initial=40, label="Images streamed per round")
    budget_ratio = forms.FloatField(
        initial=0.1,
        min_value=0.01,
        max_value=1.0,
        help_text="Labels per round / images streamed; must give at least 1 label per round.",
    )
    input_size = _setting(
        "input_size",
        initial=128,
        help_text=f"A multiple of 32, from {SMALLEST_INPUT} to {LARGEST_INPUT}.",
    )
    initial_images = _setting("initial_images", initial=240)
    initial_steps = _setting("initial_steps", initial=300)
    finetune_steps = _setting("finetune_steps", initial=120)
    gate_images = _setting("gate_images", initial=40)
    test_images = _setting("test_images", initial=80)

    SETTINGS = (
        "rounds",
        "stream_per_round",
        "budget_ratio",
        "input_size",
        "initial_images",
        "initial_steps",
        "finetune_steps",
        "gate_images",
        "test_images",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["strategies"].choices = [(n, n) for n in benchmarks.strategy_names()]
        self.fields["strategies"].initial = list(benchmarks.DEFAULT_STRATEGIES)

    def clean_seeds(self):
        try:
            return [int(part) for part in self.cleaned_data["seeds"].split()]
        except ValueError:
            raise forms.ValidationError("Seeds are whole numbers separated by spaces.") from None

    def settings(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.SETTINGS}


@permission_required("loops.view_loop", raise_exception=True)
def benchmark_list(request, loop_id: int):
    """Past benchmarks of the loop, and (for operators) the form that starts one."""
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    form = BenchmarkForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm("loops.operate_loop"):
            raise PermissionDenied("Only admins start benchmarks.")
        if form.is_valid():
            try:
                job = benchmarks.start_benchmark(
                    loop,
                    user=request.user,
                    strategies=form.cleaned_data["strategies"],
                    seeds=form.cleaned_data["seeds"],
                    settings=form.settings(),
                )
            except jobs.JobAlreadyActive as exc:
                messages.info(request, f"A benchmark of this loop is running: job #{exc.job.pk}.")
                return redirect("loops:benchmark", loop_id=loop.pk, job_id=exc.job.pk)
            except (services.LoopError, jobs.JobError) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Started benchmark job #{job.pk}.")
                return redirect("loops:benchmark", loop_id=loop.pk, job_id=job.pk)
    return render(
        request,
        "loops/benchmark_list.html",
        {"loop": loop, "form": form, "runs": benchmarks.benchmark_jobs(loop)[:50]},
    )


def _benchmark_job(loop_id: int, job_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    job = benchmarks.benchmark_jobs(loop).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such benchmark of this loop.")
    return loop, job


@permission_required("loops.view_loop", raise_exception=True)
def benchmark_detail(request, loop_id: int, job_id: int):
    loop, job = _benchmark_job(loop_id, job_id)
    table = benchmarks.rounds_table(job)
    strategies = list(dict.fromkeys(entry["strategy"] for entry in table))
    chart = [
        {
            "round": round_index,
            **{e["strategy"]: round(e["f1"], 4) for e in table if e["round"] == round_index},
        }
        for round_index in sorted({e["round"] for e in table})
    ]
    initial = job.result.get("initial") or []
    if table and initial and chart[0]["round"] != 0:
        # Round 0: every strategy starts from the same initial model.
        start = round(sum(r["edge_f1"] for r in initial) / len(initial), 4)
        chart.insert(0, {"round": 0, **{name: start for name in strategies}})
    return render(
        request,
        "loops/benchmark_detail.html",
        {
            "loop": loop,
            "job": job,
            "running": job.status in ACTIVE_STATUSES,
            "leaderboard": benchmarks.finished_leaderboard(job),
            "table": table,
            "chart": chart,
            "strategies": strategies,
            "baselines": ("Random", "All"),
        },
    )


@permission_required("loops.view_loop", raise_exception=True)
def benchmark_csv(request, loop_id: int, job_id: int):
    loop, job = _benchmark_job(loop_id, job_id)
    response = HttpResponse(benchmarks.leaderboard_csv(job), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="loop{loop.pk}-benchmark{job.pk}.csv"'
    return response


@require_POST
@permission_required("loops.change_loop", raise_exception=True)
def use_miner(request, loop_id: int, job_id: int):
    """One click: the chosen strategy's miner into the loop's YAML (the settings page's checks)."""
    loop, job = _benchmark_job(loop_id, job_id)
    strategy = request.POST.get("strategy", "")
    ranked = [entry["strategy"] for entry in benchmarks.finished_leaderboard(job)]
    if strategy not in ranked:
        messages.error(request, f"{strategy or 'That strategy'} is not on this leaderboard.")
        return redirect("loops:benchmark", loop_id=loop.pk, job_id=job.pk)
    try:
        benchmarks.use_miner(loop, strategy)
    except services.LoopError as exc:
        messages.error(request, str(exc))
        return redirect("loops:benchmark", loop_id=loop.pk, job_id=job.pk)
    messages.success(request, f"The loop's labeling queue now uses {strategy}.")
    return redirect("loops:detail", loop_id=loop.pk)
