"""What PEBBLE's replay buffer costs (Lee et al. 2021): relabelling, state-entropy bonus, checkpoint files.

Three figures, on one thread: torch's and numpy's BLAS (OpenBLAS) alike. numpy's BLAS otherwise starts a
thread per core, and on a busy 2-core machine the fast path then took 1.5-4.2 s instead of 0.65-0.8 s.

* ``relabel``: seconds to score a full SAC buffer of 1M Hopper-sized transitions (obs 11, actions 3) with a
  3-member 64×64 ensemble (``RewardEnsemble.for_spaces``), as the trainer does after every reward update
  (:func:`prefrl.off_policy.relabel_replay_buffer`, actions unscaled from SAC's [-1, 1]); beside it the
  same through the ensemble's torch path (``member_rewards``), and the fast path's time by batch size
  (a batch's hidden activations, batch × 3 × 64 float32, stay in the CPU cache up to a few thousand).
* ``entropy_bonus``: milliseconds a SAC batch of 256 costs with the bonus on
  (``StateEntropyReplayBuffer.sample``: k = 5 nearest neighbours among at most 10,000 stored states), for
  buffers of 9,000 states (B-Pref's ``num_unsup_steps`` for locomotion: the whole exploration phase),
  100k and 1M; and the k-NN against every stored state, as B-Pref's ``compute_state_entropy`` does.
* ``checkpoint_file``: bytes and seconds for 100k Hopper transitions from a random policy, written as
  stored (the filled rows of every field) and compactly
  (:func:`prefrl.replay_storage.save_replay_buffer`), on prefrl's fixed-horizon Hopper (1,000-step
  episodes) and on gymnasium's Hopper-v5, whose random episodes end after a few dozen steps (the worst case
  for storing next observations only at episode ends).

    python -m benchmarks.relabel_speed
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: its BLAS reads these once

import gymnasium as gym  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer  # noqa: E402

import prefrl.envs  # noqa: E402, F401  (registers prefrl/Hopper-v0)
from benchmarks.common import RESULTS, machine_info, write_json  # noqa: E402
from prefrl import off_policy, replay_storage  # noqa: E402
from prefrl.reward_model import RewardEnsemble  # noqa: E402

OBS = gym.spaces.Box(-np.inf, np.inf, (11,), np.float64)  # Hopper's spaces
ACT = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


@dataclass
class Args:
    transitions: int = 1_000_000
    repeats: int = 3
    file_transitions: int = 100_000
    out: Path = RESULTS / "relabel_speed.json"


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Best and median wall seconds of ``repeats`` calls (the machine is shared: the best is the cost)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"best_s": round(min(seconds), 4), "median_s": round(statistics.median(seconds), 4)}


def random_buffer(
    size: int, rng: np.random.Generator, cls: type[ReplayBuffer] = ReplayBuffer
) -> ReplayBuffer:
    buffer = cls(size, OBS, ACT)
    buffer.observations[:] = rng.normal(size=buffer.observations.shape)
    buffer.actions[:] = rng.uniform(-1, 1, buffer.actions.shape)
    buffer.pos, buffer.full = 0, True
    return buffer


def bench_relabel(args: Args, rng: np.random.Generator) -> dict[str, object]:
    ensemble = RewardEnsemble.for_spaces(OBS, ACT)
    buffer = random_buffer(args.transitions, rng)
    low, high = ACT.low, ACT.high

    def unscale(acts: np.ndarray) -> np.ndarray:  # what SAC's policy.unscale_action computes
        return low + 0.5 * (acts + 1.0) * (high - low)

    def relabel(batch_size: int = 65_536) -> None:
        off_policy.relabel_replay_buffer(buffer, ensemble, to_env_actions=unscale, batch_size=batch_size)

    fast = timed(relabel, args.repeats)
    sizes = {
        str(b): timed(partial(relabel, b), args.repeats)["best_s"]
        for b in (1_024, 4_096, 16_384, 65_536, 262_144)
    }
    torch_path = timed(
        lambda: off_policy.relabel_replay_buffer(
            buffer, lambda o, a: ensemble.member_rewards(o, a).mean(0), to_env_actions=unscale
        ),
        1,
    )
    check = ensemble.member_rewards(buffer.observations[:1000, 0], unscale(buffer.actions[:1000, 0])).mean(0)
    relabel()
    assert np.allclose(buffer.rewards[:1000, 0], check, atol=1e-4), "the fast path disagrees with torch"
    return {
        "transitions": args.transitions,
        "numpy_fast_path": fast,
        "torch_path": torch_path,
        "numpy_fast_path_by_batch_size_s": sizes,
    }


def bench_entropy_bonus(args: Args, rng: np.random.Generator) -> dict[str, object]:
    out: dict[str, object] = {
        "batch": 256,
        "k": off_policy.ENTROPY_K,
        "reference": off_policy.ENTROPY_REFERENCE,
    }
    for stored in (9_000, 100_000, args.transitions):
        buffer = random_buffer(stored, rng, off_policy.StateEntropyReplayBuffer)
        result = timed(partial(buffer.sample, 256), 5 * args.repeats)
        out[f"sample_ms_{stored}_stored"] = round(1000 * result["best_s"], 2)
    states = rng.normal(size=(256, 11)).astype(np.float32)
    every = rng.normal(size=(100_000, 11)).astype(np.float32)
    full = timed(lambda: off_policy.knn_distance(states, every, off_policy.ENTROPY_K + 1), args.repeats)
    out["knn_ms_against_all_100000_stored"] = round(1000 * full["best_s"], 2)
    return out


def played_buffer(env_id: str, transitions: int, seed: int) -> tuple[ReplayBuffer, int]:
    """``transitions`` random-policy steps, stored as SB3 stores them (the terminal observation as next)."""
    env = gym.make(env_id)
    buffer = ReplayBuffer(transitions, env.observation_space, env.action_space)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    episodes = 0
    for _ in range(transitions):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        buffer.add(
            obs, next_obs, action, np.array([reward]), np.array([done]), [{"TimeLimit.truncated": truncated}]
        )
        obs = next_obs
        if done:
            obs, _ = env.reset()
            episodes += 1
    return buffer, episodes


def save_as_stored(buffer: ReplayBuffer, path: Path) -> None:
    """The filled rows of every field, as SB3 keeps them (the writer before prefrl.replay_storage)."""
    rows = replay_storage.filled_rows(buffer)
    fields = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
    with open(path, "wb") as f:
        np.savez(f, **{name: getattr(buffer, name)[:rows] for name in fields})


def file_figures(buffer: ReplayBuffer, repeats: int) -> dict[str, object]:
    row: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        as_stored, compact = Path(tmp) / "as_stored.npz", Path(tmp) / "compact.npz"
        row["as_stored_write"] = timed(partial(save_as_stored, buffer, as_stored), repeats)
        row["compact_write"] = timed(partial(replay_storage.save_replay_buffer, buffer, compact), repeats)
        fresh = ReplayBuffer(buffer.buffer_size, buffer.observation_space, buffer.action_space)
        row["compact_load"] = timed(partial(replay_storage.load_replay_buffer, fresh, compact), repeats)
        row["as_stored_mb"] = round(as_stored.stat().st_size / 1e6, 2)
        row["compact_mb"] = round(compact.stat().st_size / 1e6, 2)
    return row


def bench_checkpoint_file(args: Args) -> dict[str, object]:
    out: dict[str, object] = {"transitions": args.file_transitions}
    for env_id in ("prefrl/Hopper-v0", "Hopper-v5"):
        buffer, episodes = played_buffer(env_id, args.file_transitions, seed=0)
        out[env_id] = {"episodes_ended": episodes, **file_figures(buffer, args.repeats)}
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    relabel, files = results["relabel"], results["checkpoint_file"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = ["numpy fast path", "torch path"]
    ax1.bar(names, [relabel["numpy_fast_path"]["best_s"], relabel["torch_path"]["best_s"]])
    ax1.set_ylabel("seconds")
    ax1.set_title(f"relabel {relabel['transitions']:,} transitions (1 thread)")
    envs = [e for e in files if isinstance(files[e], dict)]
    x = np.arange(len(envs))
    ax2.bar(x - 0.2, [files[e]["as_stored_mb"] for e in envs], 0.4, label="as stored")
    ax2.bar(x + 0.2, [files[e]["compact_mb"] for e in envs], 0.4, label="compact")
    ax2.set_xticks(x, envs)
    ax2.set_ylabel("MB")
    ax2.set_title(f"replay buffer file, {files['transitions']:,} transitions")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(args: Args) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = {
        "relabel": bench_relabel(args, rng),
        "entropy_bonus": bench_entropy_bonus(args, rng),
        "checkpoint_file": bench_checkpoint_file(args),
    }
    threads = {"torch": torch.get_num_threads(), "openblas": os.environ["OPENBLAS_NUM_THREADS"]}
    write_json(args.out, {**results, "threads": threads, "machine": machine_info()})
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main(tyro.cli(Args))
