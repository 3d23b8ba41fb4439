"""The predict API vs the same LiteRT runner called in-process, on the same images.

    .venv/bin/python bench/inference_api.py [--images 32] [--requests 96] [--size 640x480]
                                            [--input-size 192]

Sets up a temporary portal (SQLite, embedded Redis, a temporary var/), registers and deploys an
FPN (192 px input by default; two training steps: weights do not change the speed), starts the
ASGI server (daphne) as a separate process and sends the same JPEG images through
`POST /api/v1/loops/<id>/predict/` at 1, 4 and 16 concurrent clients (keep-alive connections),
with the intake policy storing nothing. The in-process side calls the very same `EdgeRunner`
from the same number of threads (one runner, as the server has one model; it runs one inference
at a time), in two ways: on the same JPEG bytes (decoded with the same function the API uses:
what an application that embeds the runner does with these images; the targets are read against
this) and on arrays decoded beforehand (the bare runner, for reference). Also the edge agent
end to end (`agent.infer`: local inference + mining) vs the bare runner. Prints one table;
docs/benchmarks.md records it.
"""

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="ilportal-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "ilportal.settings"
os.environ["EDGE_DEVICE_REQUESTS_PER_MINUTE"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONCURRENCY = (1, 4, 16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--requests", type=int, default=96, help="per concurrency level")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--input-size", type=int, default=192, help="the model's input, px")
    parser.add_argument("--web-processes", type=int, default=1, help="daphne processes")
    args = parser.parse_args()

    import django

    from ilportal import embedded_redis

    redis = embedded_redis.start(Path(os.environ["VAR_DIR"]))
    try:
        django.setup()
        run(args)
    finally:
        redis.terminate()


def setup_portal(input_size: int = 192):
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.accounts.services import create_device_token
    from apps.datasets.services import create_dataset
    from apps.edge import services as edge
    from apps.loops import services
    from worker.ml.fpn import FPNModel
    from worker.ml.synthetic import CLASS_NAMES, generate_samples

    dataset = create_dataset(name="bench", class_names=list(CLASS_NAMES))
    loop = services.create_loop(name="bench", dataset=dataset)
    model = FPNModel(max_iteration=2, batch_size=4, seed=0, input_size=input_size)
    model.train(generate_samples(8, "initial", seed=0, image_size=input_size))
    with tempfile.TemporaryDirectory() as directory:
        archive = model.save(os.path.join(directory, "model.zip"), include_litert=True)
        version = services.register_version(loop, archive, source="uploaded")
    services.move_deployed_pointer(
        version.pk, action="force", started_by="bench", reason="bench", job_id=None
    )
    edge.update_policy(loop, mode="nothing")
    token = create_device_token(name="bench", created_by=None, loops=[loop]).raw_token
    loop.refresh_from_db()
    return loop, version, token


def make_images(count: int, size: str) -> list[bytes]:
    from PIL import Image

    from worker.ml.synthetic import generate_image

    width, height = (int(v) for v in size.split("x"))
    images = []
    for index in range(count):
        array, _ = generate_image(index, "edge", seed=1, image_size=max(width, height))
        buffer = io.BytesIO()
        Image.fromarray(array).resize((width, height)).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def measure(work, clients: int, total: int) -> tuple[list[float], float]:
    """Runs ``work(client, index)`` ``total`` times from ``clients`` threads; latencies, wall."""
    latencies: list[float] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def client(number: int) -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            started = time.perf_counter()
            work(number, index)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], wall: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered) / wall


def run(args) -> None:
    from apps.edge import serving
    from apps.edge.preparation import ensure_edge_model
    from worker.edge.agent import EdgeAgent
    from worker.edge.inference import decode_image
    from worker.ml.litert import EdgeRunner

    loop, version, token = setup_portal(args.input_size)
    images = make_images(args.images, args.size)
    arrays = [decode_image(d, max_bytes=10**9, max_pixels=10**9) for d in images]
    decoder = ensure_edge_model(version).decoder_config
    threads = int(os.environ.get("EDGE_INFERENCE_THREADS", "2"))  # as the server's runner
    runner = EdgeRunner(serving._local_copy(version), decoder, num_threads=threads)  # noqa: SLF001

    # One listening socket shared by --web-processes daphne processes (the kernel spreads the
    # connections), as `runportal --web-processes` serves.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    log = open(Path(os.environ["VAR_DIR"]) / "daphne.log", "w")  # noqa: SIM115
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--fd",
                str(listener.fileno()),
                "ilportal.asgi:application",
            ],
            cwd=REPO,
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
        for _ in range(args.web_processes)
    ]
    try:
        wait_for_port(port)
        connections: dict[int, http.client.HTTPConnection] = {}
        path = f"/api/v1/loops/{loop.pk}/predict/"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}

        def through_api(client: int, index: int) -> None:
            connection = connections.get(client)
            if connection is None:
                connection = connections[client] = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=60
                )
            connection.request("POST", path, body=images[index % len(images)], headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {body[:200]!r}")
            assert json.loads(body)["version"]["id"] == version.pk

        def in_process(client: int, index: int) -> None:
            runner.predict([arrays[index % len(arrays)]])

        def in_process_from_jpeg(client: int, index: int) -> None:
            array = decode_image(images[index % len(images)], max_bytes=10**9, max_pixels=10**9)
            runner.predict([array])

        for client in range(4 * args.web_processes):  # warm-up: each server loads the model
            through_api(client, 0)
            in_process(0, 0)
        rows = []
        for clients in CONCURRENCY:
            connections.clear()
            api = summary(*measure(through_api, clients, args.requests))
            from_jpeg = summary(*measure(in_process_from_jpeg, clients, args.requests))
            local = summary(*measure(in_process, clients, args.requests))
            rows.append((clients, api, from_jpeg, local))

        home = tempfile.mkdtemp(prefix="bench-agent-")
        agent = EdgeAgent(f"http://127.0.0.1:{port}", token, loop.pk, home).start(background=False)
        agent_side = summary(
            *measure(lambda c, i: agent.infer(arrays[i % len(arrays)]), 1, args.requests)
        )
        bare = summary(*measure(in_process, 1, args.requests))
        agent.stop()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)
        listener.close()

    print(
        f"images={args.images} ({args.size} JPEG) requests/level={args.requests} "
        f"model input={args.input_size} px, web processes={args.web_processes}, "
        f"inference threads={os.environ.get('EDGE_INFERENCE_THREADS', '2')}, cpus={os.cpu_count()}"
    )
    print(
        f"{'clients':>7} | {'API p50 ms':>10} {'p99':>7} {'img/s':>7} | "
        f"{'JPEG+runner p50':>15} {'p99':>7} {'img/s':>7} | {'p50 ratio':>9} {'img/s ratio':>11} | "
        f"{'runner p50':>10} {'img/s':>7} | {'p50 ratio':>9} {'img/s ratio':>11}"
    )
    for clients, (ap50, ap99, arate), (jp50, jp99, jrate), (lp50, _, lrate) in rows:
        print(
            f"{clients:>7} | {ap50:>10.1f} {ap99:>7.1f} {arate:>7.1f} | "
            f"{jp50:>15.1f} {jp99:>7.1f} {jrate:>7.1f} | "
            f"{ap50 / jp50:>9.2f} {arate / jrate:>11.2f} | "
            f"{lp50:>10.1f} {lrate:>7.1f} | {ap50 / lp50:>9.2f} {arate / lrate:>11.2f}"
        )
    print(
        f"agent.infer (local inference + mining) p50 {agent_side[0]:.1f} ms, "
        f"{agent_side[2]:.1f} img/s; bare runner p50 {bare[0]:.1f} ms, {bare[2]:.1f} img/s; "
        f"ratio {agent_side[0] / bare[0]:.2f}"
    )


def wait_for_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the ASGI server did not start")


if __name__ == "__main__":
    main()
