"""The edge agent against a faulty portal: a tiny HTTP server in a thread answers what each test
asks (broken status lines, cut bodies, HTML with status 200, HTTP-date Retry-After, 4xx, 503,
trickling and hanging answers). The LiteRT detector is replaced by a fake one, so these run in
seconds and need neither TensorFlow nor Django."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.edge import agent as agent_module
from worker.edge import upload_queue as queue_module
from worker.edge.agent import EdgeAgent
from worker.edge.portal import PortalClient, PortalRefused, PortalUnreachable, parse_retry_after
from worker.edge.upload_queue import UploadQueue

DECODER = {"class_names": ["helmet"], "score_threshold": 0.3, "candidate_threshold": 0.05}
IMAGE = __import__("numpy").zeros((16, 16, 3), dtype="uint8")


# ---------------------------------------------------------------------------- a fake detector
@dataclass
class FakeDetection:
    def as_dict(self) -> dict:
        return {"boxes": [], "hard": True, "hardness": 0.9, "miner": "Fake", "width": 16,
                "height": 16}  # fmt: skip


class FakeRunner:
    def __init__(self, config):
        self.config = config


class FakeDetector:
    """Loads like the real one: fails on a missing file, a non-model, an unknown miner."""

    def __init__(self, path, decoder, miner, threads=2):
        if not Path(path).read_bytes().startswith(b"MODEL"):
            raise ValueError("not a model")
        if miner is not None and miner.name not in ("Fake", "Other"):
            raise KeyError(f"unknown miner {miner.name}")
        self.runner = FakeRunner(decoder)
        self.miner_spec = miner

    def detect(self, images):
        return [FakeDetection() for _ in images]


def fake_smoke_test(path, decoder):
    passed = Path(path).read_bytes().startswith(b"MODEL")
    return {"passed": passed, "problems": [] if passed else ["not a model"]}


@pytest.fixture(autouse=True)
def fake_litert(monkeypatch):
    monkeypatch.setattr(agent_module, "EdgeDetector", FakeDetector)
    monkeypatch.setattr(agent_module, "smoke_test", fake_smoke_test)


# ---------------------------------------------------------------------------- a faulty portal
class FakePortal:
    """Routes are matched by a word of the path: model, litert, intake, heartbeat. ``faults``
    maps a route to a list of faults used one per request (then the normal answer), or to one
    fault used on every request."""

    def __init__(self):
        self.faults: dict[str, object] = {}
        self.requests: list[tuple[str, str, float]] = []
        self.uploaded_keys: list[str] = []
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.miner = {"name": "Fake", "hyperparameters": {}}
        self.intake = {"mode": "hard", "sample_percent": 0}
        self.deploy(1, "v1", b"MODEL-1" * 100)

    def deploy(self, version_id: int, label: str, data: bytes) -> None:
        self.version = {"id": version_id, "label": label}
        self.model_bytes = data

    def manifest(self) -> dict:
        return {
            "version": self.version,
            "litert": {
                "url": f"{self.url}/api/v1/loops/1/model/litert/",
                "sha256": hashlib.sha256(self.model_bytes).hexdigest(),
                "size": len(self.model_bytes),
            },
            "decoder": DECODER,
            "miner": self.miner,
            "intake": self.intake,
        }

    def etag(self) -> str:
        return '"' + hashlib.sha256(json.dumps(self.manifest()).encode()).hexdigest()[:16] + '"'

    def count(self, route: str) -> int:
        return sum(route in path for _, path, _ in self.requests)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def _fault(self, route: str):
        with self.lock:
            fault = self.faults.get(route)
            if isinstance(fault, list):
                return fault.pop(0) if fault else None
            return fault

    def _handler(self):
        portal = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def json(self, status, payload, headers=()):
                self.reply(status, json.dumps(payload).encode(),
                           [("Content-Type", "application/json"), *headers])  # fmt: skip

            def do_GET(self):
                self.handle_any()

            def do_POST(self):
                self.handle_any()

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                route = next(
                    (r for r in ("litert", "model", "intake", "heartbeat") if r in self.path), ""
                )
                portal.requests.append((self.command, self.path, time.monotonic()))
                fault = portal._fault(route)
                body, status, headers = self.normal(route)
                if fault is None:
                    return self.reply(status, body, headers)
                if fault == "garbage":
                    self.wfile.write(b"HTTX/9 ???\r\n\r\n")
                    self.close_connection = True
                elif fault == "truncated":
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body) + 100))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif fault == "html200":
                    self.reply(200, b"<html>captive portal login</html>")
                elif fault == "retrydate":
                    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
                    self.reply(429, b"{}", [("Retry-After", past)])
                elif fault == "503ra":
                    self.json(503, {"detail": "maintenance"}, [("Retry-After", "60")])
                elif fault == "lostanswer":
                    self.close_connection = True
                elif fault == "hang":
                    portal.closing.wait(30)
                    self.close_connection = True
                elif fault == "trickle":
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for index in range(len(body)):
                        if portal.closing.wait(0.2):
                            break
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                    self.close_connection = True
                elif isinstance(fault, tuple) and fault[0] == "json":
                    self.json(fault[1], {"detail": f"fake portal says {fault[1]}"})
                elif isinstance(fault, tuple) and fault[0] == "html":
                    self.reply(fault[1], b"<html>proxy error</html>",
                               [("Content-Type", "text/html")])  # fmt: skip
                else:
                    raise AssertionError(f"unknown fault {fault!r}")

            def normal(self, route):
                if route == "model":
                    etag = portal.etag()
                    if self.headers.get("If-None-Match") == etag:
                        return b"", 304, [("ETag", etag)]
                    body = json.dumps(portal.manifest()).encode()
                    return body, 200, [("ETag", etag), ("Content-Type", "application/json")]
                if route == "litert":
                    return portal.model_bytes, 200, [("Content-Type", "application/octet-stream")]
                if route == "intake":
                    portal.uploaded_keys.append(self.headers.get("Idempotency-Key"))
                    return b'{"intake": "queued"}', 201, [("Content-Type", "application/json")]
                return b"{}", 200, [("Content-Type", "application/json")]

        return Handler


@pytest.fixture
def portal():
    fake = FakePortal()
    yield fake
    fake.close()


def make_agent(url, home, **options) -> EdgeAgent:
    settings = {
        "poll_interval_s": 0.2,
        "timeout_s": 2.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.3,
        "start_wait_s": 2.0,
        **options,
    }
    return EdgeAgent(url, "ilp_test", 1, home, **settings)


def wait_for(condition, timeout_s=10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def alive(agent: EdgeAgent) -> set[str]:
    return {thread.name for thread in agent._threads if thread.is_alive()}


def dead_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def with_model(portal, home) -> None:
    """``home`` has the deployed model on disk (one online start)."""
    make_agent(portal.url, home).start(background=False).stop()


# ---------------------------------------------------------------------------- 1 and 12
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("garbage", PortalUnreachable),
        ("truncated", PortalUnreachable),
        ("html200", PortalUnreachable),
        ("lostanswer", PortalUnreachable),
        ("503ra", PortalUnreachable),
        ("retrydate", PortalRefused),
    ],
)
def test_every_broken_answer_is_one_of_the_two_portal_errors(portal, fault, expected):
    client = PortalClient(portal.url, "t", 1, timeout_s=2)
    portal.faults["intake"] = fault
    with pytest.raises(expected) as caught:
        client.upload(b"img", "a.jpg", {}, 1, "key")
    if fault == "503ra":
        assert caught.value.retry_after == 60  # 12: Retry-After carried on a 503
    if fault == "retrydate":
        assert caught.value.code == 429 and caught.value.retry_after == 0  # a date in the past
    portal.faults["model"] = fault
    with pytest.raises(expected):
        client.manifest(None)


def test_retry_after_as_seconds_or_as_an_http_date():
    assert parse_retry_after("7") == 7
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < parse_retry_after(future) <= 121
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("99999999") == 3600


@pytest.mark.parametrize("skew_s", [-7200, 0, 7200])
def test_an_http_date_retry_after_is_counted_from_the_answers_date_header(skew_s):
    """A device clock two hours behind used to wait the cap (an hour) for a date one minute
    ahead on the portal's clock, one two hours ahead not at all; the answer's Date header is
    the portal's now."""
    portal_now = time.time() - skew_s  # the device's clock is off by skew_s
    date = email.utils.formatdate(portal_now, usegmt=True)
    later = email.utils.formatdate(portal_now + 60, usegmt=True)
    assert 58 <= parse_retry_after(later, sent_at=date) <= 61
    assert parse_retry_after(later, sent_at="not a date") == pytest.approx(
        parse_retry_after(later), abs=1
    )


@pytest.mark.parametrize("fault", ["garbage", "truncated", "html200", "retrydate", "lostanswer"])
def test_a_broken_upload_answer_is_retried_and_the_uploader_keeps_running(portal, tmp_path, fault):
    with_model(portal, tmp_path)
    portal.faults["intake"] = [fault, fault]
    agent = make_agent(portal.url, tmp_path).start()
    try:
        for _ in range(3):
            assert agent.infer(IMAGE)["queued_for_upload"]
        assert wait_for(lambda: agent.queue.counters["uploaded"] == 3), agent.status()
        assert len(agent.queue) == 0 and agent.queue.counters["rejected"] == 0
        assert "_upload_loop" in alive(agent) and "_poll_loop" in alive(agent)
    finally:
        agent.stop()


def test_an_unexpected_error_while_uploading_is_recorded_and_retried(portal, tmp_path):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path).start()
    real_upload = agent.portal.upload
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("something nobody expected")
        return real_upload(*args)

    agent.portal.upload = flaky
    try:
        agent.infer(IMAGE)
        assert wait_for(lambda: agent.queue.counters["uploaded"] == 1), agent.status()
        assert "_upload_loop" in alive(agent)
    finally:
        agent.stop()


def test_503_with_retry_after_is_honoured(portal, tmp_path):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path).start(background=False)
    agent.infer(IMAGE)
    portal.faults["intake"] = "503ra"
    assert agent.drain() == 0
    assert agent._upload_backoff.until - time.monotonic() > 50  # not 0.05 s
    assert "503" in agent.status()["upload_error"]


# ---------------------------------------------------------------------------- 2 and 13
@pytest.mark.parametrize("fault", ["garbage", "html200", "truncated", ("json", 409)])
@pytest.mark.parametrize("background", [False, True])
def test_start_serves_from_disk_whatever_the_manifest_answer(portal, tmp_path, fault, background):
    with_model(portal, tmp_path)
    portal.faults["model"] = fault
    agent = make_agent(portal.url, tmp_path).start(background=background)
    try:
        assert agent.version == {"id": 1, "label": "v1"}
        assert agent.infer(IMAGE)["version"]["label"] == "v1"
        assert agent.status()["last_sync_error"]
    finally:
        agent.stop()


def test_start_messages_say_what_happened(portal, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ilportal.edge.agent")
    portal.faults["model"] = ("json", 401)
    agent = make_agent(portal.url, tmp_path / "none").start(background=False)
    assert agent.version is None
    text = caplog.text
    assert "refused" in text and "Devices page" in text and "no model to serve yet" in text
    assert "not reachable" not in text and "serving the last model" not in text

    caplog.clear()
    make_agent(dead_url(), tmp_path / "none").start(background=False)
    assert "portal not reachable at start" in caplog.text
    assert "no model to serve yet" in caplog.text


def test_a_token_revoked_while_running_is_logged_once(portal, tmp_path, caplog):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path, poll_interval_s=0.05).start()
    try:
        caplog.set_level(logging.WARNING, logger="ilportal.edge.agent")
        portal.faults["model"] = ("json", 401)
        portal.faults["intake"] = ("json", 401)
        agent.infer(IMAGE)
        assert wait_for(lambda: portal.count("model") > 8)
        assert wait_for(lambda: "upload refused" in caplog.text)
        revoked = [r for r in caplog.records if "model poll" in r.getMessage()]
        assert len(revoked) == 1 and "Devices page" in revoked[0].getMessage()
        assert len(agent.queue) == 1  # the image is kept
    finally:
        agent.stop()


# ---------------------------------------------------------------------------- 3
def test_the_poll_thread_survives_any_sync_failure_and_still_sends_heartbeats(portal, tmp_path):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path, poll_interval_s=0.05).start()
    try:
        # A broken answer, then an unknown miner (the detector cannot be built).
        portal.faults["model"] = ["garbage", "garbage"]
        portal.miner = {"name": "NoSuchMiner", "hyperparameters": {}}
        assert wait_for(lambda: "NoSuchMiner" in agent.status()["last_sync_error"])
        beats = portal.count("heartbeat")
        assert wait_for(lambda: portal.count("heartbeat") > beats + 2)  # sync fails, still beats
        # Then a new version: it is taken.
        portal.miner = {"name": "Fake", "hyperparameters": {}}
        portal.deploy(2, "v2", b"MODEL-2" * 100)
        assert wait_for(lambda: agent.version == {"id": 2, "label": "v2"}), agent.status()
        assert alive(agent) == {"_poll_loop", "_upload_loop"}
        assert agent.status()["last_sync_error"] == ""
    finally:
        agent.stop()


def test_a_model_file_removed_while_serving_is_downloaded_again(portal, tmp_path):
    agent = make_agent(portal.url, tmp_path, poll_interval_s=0.05).start()
    try:
        path = agent._path(agent._model.sha256)
        path.unlink()
        portal.miner = {"name": "Other", "hyperparameters": {"t": 1}}  # a settings change
        assert wait_for(lambda: path.exists() and agent._model.detector.miner_spec.name == "Other")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == agent._model.sha256
        assert alive(agent) == {"_poll_loop", "_upload_loop"}
    finally:
        agent.stop()


def test_heartbeats_go_out_when_the_loop_has_no_deployed_model(portal, tmp_path):
    with_model(portal, tmp_path)
    portal.faults["model"] = ("json", 409)
    agent = make_agent(portal.url, tmp_path, poll_interval_s=0.05).start()
    try:
        assert wait_for(lambda: portal.count("heartbeat") >= 2)
    finally:
        agent.stop()


# ---------------------------------------------------------------------------- 4 and 6
def manifest_on_disk(home: Path, name: str) -> dict:
    return json.loads((home / "models" / name).read_text())


def test_previous_json_survives_restarts_and_settings_changes(portal, tmp_path):
    with_model(portal, tmp_path)  # v1
    portal.deploy(2, "v2", b"MODEL-2" * 100)
    with_model(portal, tmp_path)  # v1 -> v2
    assert manifest_on_disk(tmp_path, "previous.json")["version"]["label"] == "v1"
    with_model(portal, tmp_path)  # a plain restart: same model
    assert manifest_on_disk(tmp_path, "current.json")["version"]["label"] == "v2"
    assert manifest_on_disk(tmp_path, "previous.json")["version"]["label"] == "v1"
    portal.intake = {"mode": "sample", "sample_percent": 50}  # settings only
    agent = make_agent(portal.url, tmp_path).start(background=False)
    assert agent._model.intake["mode"] == "sample"
    assert manifest_on_disk(tmp_path, "current.json")["intake"]["mode"] == "sample"
    assert manifest_on_disk(tmp_path, "previous.json")["version"]["label"] == "v1"

    # So when v2's file is damaged, an offline start still has v1.
    v2 = agent._path(agent._model.sha256)
    v2.write_bytes(b"junk")
    offline = make_agent(dead_url(), tmp_path).start(background=False)
    assert offline.version == {"id": 1, "label": "v1"}


def test_a_damaged_file_on_disk_never_serves_and_is_downloaded_again(portal, tmp_path, caplog):
    with_model(portal, tmp_path)  # v1
    portal.deploy(2, "v2", b"MODEL-2" * 100)
    with_model(portal, tmp_path)  # v2, previous v1
    sha_v2 = hashlib.sha256(portal.model_bytes).hexdigest()
    path = tmp_path / "models" / f"{sha_v2}.tflite"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x5A  # still loads (starts with MODEL), wrong weights
    path.write_bytes(bytes(damaged))

    offline = make_agent(dead_url(), tmp_path).start(background=False)
    assert offline.version == {"id": 1, "label": "v1"}  # the previous model, not the damaged one
    assert "no longer matches its sha256" in caplog.text

    online = make_agent(portal.url, tmp_path).start(background=False)
    assert online.version == {"id": 2, "label": "v2"}
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha_v2
    assert manifest_on_disk(tmp_path, "previous.json")["version"]["label"] == "v1"


def test_a_file_damaged_while_serving_is_repaired_at_the_next_manifest_change(portal, tmp_path):
    agent = make_agent(portal.url, tmp_path).start(background=False)
    path = agent._path(agent._model.sha256)
    time.sleep(0.01)
    path.write_bytes(b"MODEL-damaged")
    portal.intake = {"mode": "sample", "sample_percent": 10}
    agent.sync_model()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == agent._model.sha256


# ---------------------------------------------------------------------------- 5
def test_a_full_disk_never_fails_infer_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    agent = make_agent(dead_url(), tmp_path)
    agent._model = agent_module.LocalModel(1, "v1", "x", FakeDetector.__new__(FakeDetector), {})
    agent._model.detector.runner, agent._model.detector.miner_spec = FakeRunner(DECODER), None

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(queue_module.os, "fsync", full)
    answer = agent.infer(IMAGE)
    assert answer["version"]["label"] == "v1" and answer["queued_for_upload"] is False
    monkeypatch.undo()
    assert agent.queue.counters["dropped"] == 1
    assert [p.name for p in (tmp_path / "queue").iterdir() if p.name != "state.json"] == []

    def broken_put(*args):
        raise RuntimeError("unexpected")

    agent.queue.put = broken_put
    assert agent.infer(IMAGE)["queued_for_upload"] is False
    assert agent.queue.counters["dropped"] == 2


def test_counts_are_kept_in_memory_while_the_disk_is_full(tmp_path, monkeypatch):
    queue = UploadQueue(tmp_path)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(queue_module, "atomic_write", full)
    assert queue.put(b"a", "a.jpg", {}, None) is None
    assert queue.counters["dropped"] == 1
    monkeypatch.undo()
    queue.count_dropped()
    assert UploadQueue(tmp_path).counters["dropped"] == 2


def test_a_failed_download_leaves_no_partial_file_and_old_ones_are_removed(portal, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tmpold.part").write_bytes(b"half")
    portal.faults["litert"] = ["truncated"]
    agent = make_agent(portal.url, tmp_path).start(background=False)
    assert agent.version is None and "cut" in agent.status()["last_sync_error"]
    assert not list((tmp_path / "models").glob("*.part"))
    assert agent.sync_model() is True and agent.version["label"] == "v1"


def test_the_queue_is_bounded_in_bytes_too(tmp_path):
    queue = UploadQueue(tmp_path, max_items=100, max_bytes=3000)
    for i in range(5):
        queue.put(bytes([i]) * 900, f"{i}.jpg", {}, None)
    assert len(queue) < 5 and queue.bytes <= 3000
    assert queue.counters["dropped"] == 5 - len(queue)
    assert queue.oldest().image[0] == 5 - len(queue)
    assert queue.put(b"x" * 5000, "huge.jpg", {}, None) is None  # alone over the bound
    assert UploadQueue(tmp_path, max_bytes=3000).bytes == queue.bytes


# ---------------------------------------------------------------------------- 7
def test_start_does_not_wait_for_a_hanging_portal_when_it_has_a_model(portal, tmp_path):
    with_model(portal, tmp_path)
    portal.faults["model"] = "hang"
    started = time.monotonic()
    agent = make_agent(portal.url, tmp_path, timeout_s=20, start_wait_s=0.5).start()
    try:
        assert time.monotonic() - started < 3
        assert agent.infer(IMAGE)["version"]["label"] == "v1"
    finally:
        agent.stop(timeout_s=0.1)


def test_a_trickling_download_stops_at_its_deadline(portal, tmp_path):
    portal.faults["litert"] = "trickle"  # one byte every 0.2 s, each read within the timeout
    client = PortalClient(portal.url, "t", 1, timeout_s=2, download_deadline_s=1.0)
    started = time.monotonic()
    with pytest.raises(PortalUnreachable, match="deadline"):
        client.download(portal.manifest()["litert"]["url"], "0" * 64, str(tmp_path))
    assert time.monotonic() - started < 2.5
    assert not list(tmp_path.glob("*.part"))


def test_a_trickling_api_answer_stops_at_its_deadline(portal):
    portal.faults["model"] = "trickle"
    client = PortalClient(portal.url, "t", 1, timeout_s=2, deadline_s=1.0)
    started = time.monotonic()
    with pytest.raises(PortalUnreachable):
        client.manifest(None)
    assert time.monotonic() - started < 2.5


# ---------------------------------------------------------------------------- 8
@pytest.mark.parametrize(
    "fault",
    [("json", 408), ("json", 409), ("json", 404), ("json", 425), ("html", 400), ("html", 404)],
)
def test_a_refusal_not_about_the_image_keeps_the_queue_and_backs_off(portal, tmp_path, fault):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path).start(background=False)
    for _ in range(5):
        agent.infer(IMAGE)
    portal.faults["intake"] = fault
    assert agent.drain() == 0
    assert agent.drain() == 0
    assert len(agent.queue) == 5 and agent.queue.counters["rejected"] == 0
    assert portal.count("intake") == 2  # one try per drain, then the backoff
    assert not agent._upload_backoff.ready() or agent._upload_backoff.failures == 2


def test_images_the_portal_refuses_are_dropped_with_a_pause_every_ten(portal, tmp_path):
    with_model(portal, tmp_path)
    agent = make_agent(portal.url, tmp_path, backoff_base_s=30).start(background=False)
    for _ in range(25):
        agent.infer(IMAGE)
    portal.faults["intake"] = ("json", 400)
    agent.drain()
    assert agent.queue.counters["rejected"] == 10 and len(agent.queue) == 15
    assert not agent._upload_backoff.ready()


# ---------------------------------------------------------------------------- 9 and 11
def test_an_image_being_uploaded_is_not_dropped_for_overflow(tmp_path):
    queue = UploadQueue(tmp_path, max_items=2)
    queue.put(b"a", "a.jpg", {}, None)
    queue.put(b"b", "b.jpg", {}, None)
    in_flight = queue.oldest()
    queue.put(b"c", "c.jpg", {}, None)  # full: drops b, not a (being uploaded)
    queue.done(in_flight)
    assert queue.counters == {"dropped": 1, "uploaded": 1, "rejected": 0}
    assert queue.oldest().image == b"c"


@pytest.mark.parametrize("fault", ["wrong sha256", "not a model"])
def test_a_refused_version_is_not_fetched_again_when_only_the_settings_change(
    portal, tmp_path, fault
):
    """The manifest's ETag covers the loop's settings too: each change of them downloaded a file
    refused for its sha256 again (or smoke-tested a broken one again), and refused it again."""
    agent = make_agent(portal.url, tmp_path).start(background=False)
    honest = portal.manifest
    portal.deploy(2, "v2", b"MODEL-2" * 100 if fault == "wrong sha256" else b"broken" * 50)
    if fault == "wrong sha256":
        portal.manifest = lambda: honest() | {"litert": honest()["litert"] | {"sha256": "ab" * 32}}
    assert agent.sync_model() is False
    downloads = portal.count("litert")
    for percent in (10, 20):
        portal.intake = {"mode": "sample", "sample_percent": percent}
        assert agent.sync_model() is False
    assert portal.count("litert") == downloads and len(agent.health.refused) == 1
    assert agent.version == {"id": 1, "label": "v1"}
    portal.manifest = honest
    portal.deploy(3, "v3", b"MODEL-3" * 100)
    assert agent.sync_model() and agent.version == {"id": 3, "label": "v3"}


class _Recorder:
    """Another host: records the Authorization header of each request it gets."""

    def __init__(self, redirect_to: str | None = None):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append(self.headers.get("Authorization"))
                moved = redirect_to and self.path != redirect_to
                self.send_response(302 if moved else 404)
                if moved:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_model_file_is_fetched_from_the_agents_portal_whatever_host_the_manifest_names(
    portal, tmp_path
):
    """The portal builds the file URL from the Host it was asked by (a proxy may change it): the
    agent sent its token to whatever host the manifest named. It fetches the path from its own
    portal instead."""
    other = _Recorder()
    honest = portal.manifest

    def elsewhere():
        litert = honest()["litert"]
        return honest() | {"litert": litert | {"url": other.url + "/api/v1/loops/1/model/litert/"}}

    portal.manifest = elsewhere
    try:
        agent = make_agent(portal.url, tmp_path).start(background=False)
        agent.stop()
    finally:
        other.close()
    assert other.seen == []
    assert agent.version == {"id": 1, "label": "v1"} and portal.count("litert") == 1


def test_the_token_does_not_follow_a_redirect_to_another_host():
    """urllib copies every header into a redirected request, the token included; within the
    portal's own origin it still goes along."""
    other = _Recorder()
    redirecting = _Recorder(redirect_to=other.url + "/elsewhere")
    itself = _Recorder(redirect_to="/again")
    try:
        with pytest.raises(PortalRefused):
            PortalClient(redirecting.url, "ilp_secret", 1, timeout_s=2).manifest(None)
        assert redirecting.seen == ["Bearer ilp_secret"] and other.seen == [None]
        with pytest.raises(PortalRefused):
            PortalClient(itself.url, "ilp_secret", 1, timeout_s=2).manifest(None)
        assert itself.seen == ["Bearer ilp_secret"] * 2
    finally:
        for server in (other, redirecting, itself):
            server.close()


@pytest.mark.parametrize("sha256", ["../victim", "../../victim", "/tmp/victim", "", 7, None])
def test_a_manifest_sha256_that_is_not_one_touches_no_file_outside_models(portal, tmp_path, sha256):
    """The file name comes from the sha256: "../victim" made the agent delete victim.tflite
    next to its models folder (a damaged local copy, it thought) before downloading."""
    with_model(portal, tmp_path)
    victim = tmp_path / "victim.tflite"
    victim.write_bytes(b"not the agent's")
    honest = portal.manifest

    def hostile():
        return (
            honest()
            | {"version": {"id": 2, "label": "v2"}}
            | {"litert": honest()["litert"] | {"sha256": sha256}}
        )

    portal.manifest = hostile
    agent = make_agent(portal.url, tmp_path).start(background=False)
    try:
        assert agent.version == {"id": 1, "label": "v1"}  # the old model keeps serving
        assert agent.health.refused and "sha256" in agent.health.refused[-1]["reason"]
        assert victim.read_bytes() == b"not the agent's"
    finally:
        agent.stop()
    current = tmp_path / "models" / "current.json"
    current.write_text(
        json.dumps(json.loads(current.read_text()) | {"litert": {"sha256": "../victim"}})
    )
    assert make_agent(dead_url(), tmp_path).start(background=False).version is None
    assert victim.read_bytes() == b"not the agent's"


def test_a_queue_item_with_a_damaged_key_does_not_hold_up_the_others(portal, tmp_path):
    """A key that cannot be a header value (a damaged metadata file) used to fail every attempt
    as "portal not reachable", so the item stayed first in the queue and nothing was sent."""
    with_model(portal, tmp_path)
    queue = UploadQueue(tmp_path / "queue")
    queue.put(b"first", "a.jpg", {"boxes": [], "hard": True}, 1)
    good = queue.put(b"second", "b.jpg", {"boxes": [], "hard": True}, 1)
    first = sorted((tmp_path / "queue").glob("*.json.item"))[0]
    first.write_text(json.dumps(json.loads(first.read_text()) | {"key": "abc\r\nX-Evil: 1"}))
    agent = make_agent(portal.url, tmp_path).start()
    try:
        assert wait_for(lambda: agent.queue.counters["uploaded"] == 1), agent.status()
        assert portal.uploaded_keys == [good] and agent.queue.counters["dropped"] == 1
    finally:
        agent.stop()


def test_poisoned_queue_files_are_dropped_or_ignored(tmp_path):
    queue = UploadQueue(tmp_path)
    (tmp_path / "000000000001-deadbeef.json.item").write_text("{}")
    (tmp_path / "000000000001-deadbeef.img").write_bytes(b"x")
    not_a_detection = {"key": "k", "name": "n", "detection": [], "version_id": 1}
    (tmp_path / "000000000002-beef.json.item").write_text(json.dumps(not_a_detection))
    (tmp_path / "000000000002-beef.img").write_bytes(b"x")
    (tmp_path / "notes.json.item").write_text("mine")
    (tmp_path / "state.json").write_text("[]")
    reopened = UploadQueue(tmp_path)
    assert reopened.counters == {"dropped": 0, "uploaded": 0, "rejected": 0}
    reopened.put(b"good", "g.jpg", {}, None)
    assert reopened.oldest().image == b"good"
    assert reopened.counters["dropped"] == 2
    assert (tmp_path / "notes.json.item").exists()  # not ours: left alone
    (tmp_path / "state.json").write_text("null")
    assert queue.counters["dropped"] == 0
    queue.done(reopened.oldest())
    assert queue.counters["uploaded"] == 1
