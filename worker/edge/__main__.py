"""The edge agent as a console program.

    python -m worker.edge --portal http://127.0.0.1:8000 --loop 1 --token ilp_... --simulate
    python -m worker.edge --portal URL --loop 1 IMAGE [IMAGE ...]

The token can also come from ILP_DEVICE_TOKEN (so it does not show in the process list).
``--simulate`` streams the ML core's synthetic edge-domain images through the agent: boxes are
answered locally, hard examples go to the portal's labeling queue, and a new deployed version is
swapped in while it runs. Ctrl-C stops it; the upload queue stays on disk for the next start.
"""

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="ilp edge", description=__doc__.split("\n")[0])
    parser.add_argument("--portal", default=os.environ.get("ILP_PORTAL", "http://127.0.0.1:8000"))
    parser.add_argument("--loop", type=int, required=True, help="the loop's id")
    parser.add_argument("--token", default=os.environ.get("ILP_DEVICE_TOKEN", ""))
    parser.add_argument("--home", default=os.environ.get("ILP_EDGE_HOME", "var/edge-agent"))
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between model polls")
    parser.add_argument("--max-queue", type=int, default=1000, help="images kept for upload")
    parser.add_argument(
        "--max-queue-mb", type=float, default=1024.0, help="megabytes kept for upload"
    )
    parser.add_argument("--simulate", action="store_true", help="stream synthetic edge images")
    parser.add_argument("--images", type=int, default=0, help="with --simulate: stop after N")
    parser.add_argument("--rate", type=float, default=2.0, help="with --simulate: images/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("files", nargs="*", help="images to answer once, as JSON lines")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give a device token with --token or ILP_DEVICE_TOKEN")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from worker.edge.agent import EdgeAgent, NoModelYet

    agent = EdgeAgent(
        args.portal,
        args.token,
        args.loop,
        Path(args.home) / f"loop-{args.loop}",
        poll_interval_s=args.poll,
        max_queue=args.max_queue,
        max_queue_bytes=int(args.max_queue_mb * 1024**2),
    ).start()
    try:
        if args.files:
            for name in args.files:
                answer = agent.infer(Path(name).read_bytes(), name=os.path.basename(name))
                print(json.dumps({"file": name, **answer}))
            agent.drain()
            return 0
        if args.simulate:
            simulate(agent, args)
            return 0
        print("nothing to do: give image files or --simulate", file=sys.stderr)
        return 2
    except NoModelYet as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        agent.stop()


def simulate(agent, args) -> None:
    from worker.ml.synthetic import generate_image

    index = 0
    hard = 0
    started = time.monotonic()
    while not args.images or index < args.images:
        image, _ = generate_image(
            index, "edge", seed=args.seed, image_size=192, empty_share=0.3, night_share=0.2
        )
        answer = agent.infer(image, name=f"sim-{args.seed}-{index:06d}.jpg")
        hard += answer["hard"]
        index += 1
        print(
            f"{index:6d} {answer['version']['label']:>4} boxes={len(answer['boxes']):2d} "
            f"hard={'yes' if answer['hard'] else 'no ':3} hardness={answer['hardness']:.2f} "
            f"queue={len(agent.queue)}",
            flush=True,
        )
        time.sleep(max(0.0, index / args.rate - (time.monotonic() - started)))
    agent.drain()
    status = agent.status()
    print(json.dumps({"images": index, "hard": hard, **status}))


if __name__ == "__main__":
    raise SystemExit(main())
