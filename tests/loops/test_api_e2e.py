"""train → evaluate → deploy → rollback through the REST API over HTTP, as docs/api.md shows it:
a session login, the CSRF header, a real Celery worker doing the jobs."""

import http.cookiejar
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from apps.loops.models import Loop
from tests.factories import PASSWORD, UserFactory
from tests.loops.conftest import add_synthetic_samples

pytestmark = pytest.mark.slow


class PortalSession:
    """What `curl -c jar -b jar` does: log in once, then send the CSRF cookie back as a header."""

    def __init__(self, url: str):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _cookie(self, name: str) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == name)

    def log_in(self, username: str, password: str) -> None:
        self.opener.open(f"{self.url}/login/").read()
        form = urllib.parse.urlencode(
            {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self._cookie("csrftoken"),
            }
        ).encode()
        self.opener.open(f"{self.url}/login/", data=form).read()
        assert any(cookie.name == "sessionid" for cookie in self.jar), "login failed"

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"X-CSRFToken": self._cookie("csrftoken"), "Content-Type": "application/json"},
        )
        try:
            with self.opener.open(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait_for_job(self, job: dict, portal, timeout_s: float = 240) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, state = self.call("GET", job["api_url"])
            if not state["is_active"]:
                assert state["status"] == "succeeded", (state, portal.read_logs()[-4000:])
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {job['id']} did not finish\n{portal.read_logs()[-6000:]}")


def test_train_evaluate_deploy_and_roll_back_through_the_api(live_portal, tiny_loop):
    UserFactory(username="ops", role="admin")
    api = PortalSession(live_portal.url)
    api.log_in("ops", PASSWORD)
    loop = f"/api/v1/loops/{tiny_loop.pk}"

    status, body = api.call("GET", f"{loop}/")
    assert status == 200 and body["auto_deploy"] is False

    def act(path: str, body: dict | None = None) -> dict:
        status, job = api.call("POST", f"{loop}/{path}", body)
        assert status == 202, job
        return api.wait_for_job(job, live_portal)

    trained = act("train/")
    assert trained["result"]["version"] == "v1" and trained["log_tail"]
    evaluated = act("versions/1/evaluate/")
    assert evaluated["result"]["gate_passed"] is True
    act("versions/1/deploy/")

    add_synthetic_samples(
        tiny_loop.dataset, 4, domain="edge", split="train", source="device", seed=9
    )
    assert act("train/")["result"]["version"] == "v2"
    act("versions/2/evaluate/")
    act("versions/2/deploy/")
    assert Loop.objects.get(pk=tiny_loop.pk).deployed_version.number == 2

    status, refused = api.call("POST", f"{loop}/versions/2/rollback/")
    assert status == 400 and refused["detail"] == "v2 is already deployed."
    act("versions/1/rollback/", {"reason": "v2 misses cones at night"})

    _, versions = api.call("GET", f"{loop}/versions/")
    stages = {v["number"]: v["stage"] for v in versions["results"]}
    assert stages == {1: "deployed", 2: "archived"}
    v2 = versions["results"][0]
    assert v2["lineage"]["parent"] == 1 and v2["lineage"]["new_samples"] == 4
    assert v2["lineage"]["trained_samples"] == 20 and v2["metrics"]["edge"]["f1"] >= 0
    _, moves = api.call("GET", f"{loop}/deployments/")
    assert [(m["action"], m["version"]) for m in moves["results"]] == [
        ("rollback", 1),
        ("deploy", 2),
        ("deploy", 1),
    ]
    assert moves["results"][0]["reason"] == "v2 misses cones at night"
