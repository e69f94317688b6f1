"""Shared helpers for the labeling GUI tests: stores full of pairs, and a live uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import uvicorn
from fastapi import FastAPI

import prefrl.envs  # noqa: F401
from prefrl.label_store import LabelStore
from prefrl.segments import Segment


def fake_segment(value: float, length: int = 4) -> Segment:
    """A tiny segment whose true return is ``value * length`` (no env, no clip)."""
    return Segment(
        np.full((length, 3), value, np.float32),
        np.zeros((length, 1), np.float32),
        np.full(length, value, np.float32),
        states=np.full((length, 5), value, np.float64),
    )


def fill_fake(path: Path, n_pairs: int, rng: np.random.Generator) -> list[int]:
    """``n_pairs`` queries of fake segments with random true returns; returns their ids."""
    with LabelStore(path) as store:
        pairs = [(fake_segment(rng.normal()), fake_segment(rng.normal())) for _ in range(n_pairs)]
        return [q.query_id for q in store.add_queries(pairs)]


def env_segments(env_id: str, n: int, length: int, seed: int = 0) -> list[Segment]:
    """``n`` segments of a random policy in ``env_id``, with simulator states."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    out = []
    for _ in range(n):
        obs, acts, rews, states = [], [], [], []
        o, _ = env.reset()
        for _ in range(length):
            a = env.action_space.sample()
            o2, r, _, _, info = env.step(a)
            obs.append(o)
            acts.append(a)
            rews.append(r)
            states.append(info["sim_state"])
            o = o2
        out.append(Segment(np.array(obs), np.array(acts), np.array(rews, np.float32), np.array(states)))
    env.close()
    return out


def fill_env(path: Path, env_id: str, n_pairs: int, length: int = 20) -> list[int]:
    """``n_pairs`` queries of real ``env_id`` segments (clips can be rendered); returns their ids."""
    segments = env_segments(env_id, 2 * n_pairs, length)
    with LabelStore(path) as store:
        store.set_meta("env_id", env_id)
        return [q.query_id for q in store.add_queries(list(zip(segments[::2], segments[1::2], strict=True)))]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # As labeling_gui.compare does: uvicorn's logging configuration would close the handlers installed
    # before it (absl's, imported with rliable, holds pytest's captured stderr and closes it).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def wait_for(condition, timeout_s: float = 30.0, poll_s: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``condition()`` until it returns something truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)
