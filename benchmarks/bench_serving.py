"""Serving latency and throughput on loopback: `tfanomaly serve` (gRPC and REST) against direct
in-process calls of the same SavedModel, for batch sizes 1, 16, 128 and 1 or 8 concurrent clients.
Prints p50/p99 latency, images/s and failed requests.

Builds a cpu32 export from untrained networks (the cost does not depend on training).
Usage: python benchmarks/bench_serving.py [--requests 40] [--signature serving_default]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
import keras
import numpy as np
import tensorflow as tf

from tfanomaly.models.config import get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.serving.client import GrpcClient, RestClient
from tfanomaly.serving.local import LocalServer
from tfanomaly.serving.saved_model import AnomalyScorer, save_scorer


def build_export(base: Path, steps: int) -> Path:
    config = get_preset("cpu32")
    keras.utils.set_random_seed(0)
    inverter = LatentInverter(
        Generator(config),
        Critic(config),
        Encoder(config),
        InversionConfig(steps=steps),
    )
    stats = {k: {"mean": 0.0, "std": 1.0} for k in ("anomaly_scores", "gen_scores", "disc_scores")}
    path = base / "tfanomaly" / "1"
    save_scorer(AnomalyScorer(inverter, stats, (32, 32, 3)), path)
    return path


def load(call, requests: int, clients: int) -> tuple[list[float], int]:
    """Latencies (s) of ``requests`` calls spread over ``clients`` threads, and failures."""
    latencies, failures = [], 0

    def one(_):
        started = time.perf_counter()
        try:
            call()
            return time.perf_counter() - started
        except Exception:
            return None

    with ThreadPoolExecutor(clients) as pool:
        for result in pool.map(one, range(requests)):
            if result is None:
                failures += 1
            else:
                latencies.append(result)
    return latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(_common.machine())
    with tempfile.TemporaryDirectory() as tmp:
        path = build_export(Path(tmp), args.steps)
        server = LocalServer(Path(tmp), grpc_port=0, rest_port=0).start()
        direct = tf.saved_model.load(str(path)).signatures[args.signature]
        grpc_client = GrpcClient(f"127.0.0.1:{server.grpc_port}", signature=args.signature)
        rest_client = RestClient(f"127.0.0.1:{server.rest_port}", signature=args.signature)
        print(
            f"cpu32 export, signature {args.signature} ({args.steps} inversion steps), "
            f"{args.requests} requests per row, {os.cpu_count()} CPU cores"
        )
        print(
            f"{'path':>10s} {'batch':>5s} {'clients':>7s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'images/s':>9s} {'failed':>6s}"
        )
        rng = np.random.default_rng(0)
        for batch in (1, 16, 128):
            images = rng.normal(0, 0.1, (batch, 32, 32, 3)).astype(np.float32)
            calls = {
                "in-process": lambda x=images: direct(images=tf.constant(x)),
                "gRPC": lambda x=images: grpc_client.predict({"images": x}),
                "REST": lambda x=images: rest_client.predict({"images": x}),
            }
            for name, call in calls.items():
                call()  # warm up
                for clients in (1, 8):
                    requests = max(8, args.requests // (4 if batch == 128 else 1))
                    started = time.perf_counter()
                    latencies, failed = load(call, requests, clients)
                    seconds = time.perf_counter() - started
                    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
                    print(
                        f"{name:>10s} {batch:5d} {clients:7d} {p50:8.1f} {p99:8.1f} "
                        f"{len(latencies) * batch / seconds:9,.0f} {failed:6d}",
                        flush=True,
                    )
        server.stop()


if __name__ == "__main__":
    main()
