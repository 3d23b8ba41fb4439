"""The "deployed pointer moved" seam: announced after the deploy commits, with both versions."""

import pytest

from apps.loops import services
from apps.loops.events import deployed_pointer_moved
from apps.loops.models import ModelVersion


@pytest.fixture
def heard():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    deployed_pointer_moved.connect(receiver, weak=False, dispatch_uid="test-heard")
    yield calls
    deployed_pointer_moved.disconnect(dispatch_uid="test-heard")


def _version(loop, number):
    return ModelVersion.objects.create(
        loop=loop,
        number=number,
        source="uploaded",
        artifact=f"models/v{number}.zip",
        artifact_sha256="0" * 64,
        artifact_size=1,
        gate_passed=True,
    )


def test_deploy_and_rollback_are_announced_after_commit(
    tiny_loop, heard, django_capture_on_commit_callbacks
):
    v1, v2 = _version(tiny_loop, 1), _version(tiny_loop, 2)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.move_deployed_pointer(
            v1.pk, action="deploy", started_by="test", reason="", job_id=None
        )
        assert heard == []
    with django_capture_on_commit_callbacks(execute=True):
        services.move_deployed_pointer(
            v2.pk, action="deploy", started_by="test", reason="", job_id=None
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.move_deployed_pointer(
            v1.pk, action="rollback", started_by="test", reason="worse", job_id=None
        )
    assert [(c["version_id"], c["previous_version_id"], c["action"]) for c in heard] == [
        (v1.pk, None, "deploy"),
        (v2.pk, v1.pk, "deploy"),
        (v1.pk, v2.pk, "rollback"),
    ]
    assert heard[0]["loop_id"] == tiny_loop.pk and heard[0]["deployment_id"] == first.pk


def test_a_failing_listener_never_undoes_the_deploy(
    tiny_loop, heard, django_capture_on_commit_callbacks
):
    def broken(**kwargs):
        raise ValueError("listener bug")

    v1 = _version(tiny_loop, 1)
    deployed_pointer_moved.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.move_deployed_pointer(
                v1.pk, action="deploy", started_by="test", reason="", job_id=None
            )
    finally:
        deployed_pointer_moved.disconnect(dispatch_uid="test-broken")
    tiny_loop.refresh_from_db()
    assert tiny_loop.deployed_version_id == v1.pk and len(heard) == 1
