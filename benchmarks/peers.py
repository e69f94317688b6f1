"""prefrl beside imitation's preference comparisons, on the same task (issue 13, "the peers side by side").

The task, for both: ``prefrl/Hopper-v0``, i.e. MuJoCo Hopper with no control cost, no termination and no
alive bonus, plus the torso's height above 0.7 m per step, 1,000 steps per episode (Christiano et al.
2017, App. A.1; ``envs/mujoco.py``). prefrl runs it on gymnasium 1.x's Hopper-v5; imitation, which pins
gymnasium 0.29, on that release's Hopper-v4 with the same settings and the same height term
(``benchmarks/peers_imitation.py``). Both venvs get the same MuJoCo build, and the benchmark first checks
that the two step identically: 1,000 seeded random actions, largest difference in observation and reward.

Four arms per seed, one after the other, each on the same CPU set (``--cpu``) with one torch thread per
process:

* ``prefrl-oracle``: ``prefrl train --teacher oracle --labels 700`` (prefrl's defaults: PPO as in the PPO
  paper, 3-member ensemble, disagreement queries, updates every 10k steps in a background process).
* ``prefrl-true-reward``: ``prefrl train --teacher true-reward``, its own baseline.
* ``imitation-preferences``: imitation 1.0.1's PreferenceComparisons with the values of its own training
  script (``train_defaults`` and the ``seals_hopper`` PPO config; see ``peers_imitation.py``),
  SyntheticGatherer as the oracle teacher, 700 comparisons.
* ``imitation-true-reward``: plain SB3 2.2 PPO with the same settings, its baseline.

``final_true_return`` is, as in every prefrl benchmark, the mean true return of the training episodes
finished in the last 10 % of the agent's steps. Ratio = a library's preference arm / its own true-reward
arm (means over the seeds where both finished); wall ratio likewise with wall seconds.

It also times the reward-model fit, seconds per epoch, of each library on one preference set: 700 pairs of
50-step segments of a random policy on the task, oracle labels, one torch thread.

imitation gets its own virtualenv (built once, under ``--runs-dir``). Resumable: each arm and seed writes
its own ``result.json`` and finished ones are skipped; an interrupted prefrl run is resumed from its
checkpoint, an interrupted imitation run starts over. Each finished arm's ``result.json`` and
``metrics.csv`` and the epoch timings are kept in ``benchmarks/results/peers_runs`` (``--records``; commit
it): a later sitting, whose ``benchmarks/runs`` is gone, skips what is recorded there, and ``--report-only``
rewrites the JSON and plot from the records alone (no virtualenv built). The JSON is marked
``"partial": true`` until all four arms have finished for at least 3 seeds at 1M steps.

    python -m benchmarks.peers [--steps 1000000] [--seeds 0 1 2] [--cpu 1] [--max-minutes 90]
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
IMITATION_SCRIPT = Path(__file__).resolve().parent / "peers_imitation.py"
IMITATION_PACKAGES = ("imitation==1.0.1", "gymnasium[mujoco]==0.29.1")
ENV = "prefrl/Hopper-v0"
ARMS = ("prefrl-oracle", "prefrl-true-reward", "imitation-preferences", "imitation-true-reward")
PAIRS = {
    "prefrl": ("prefrl-oracle", "prefrl-true-reward"),
    "imitation": ("imitation-preferences", "imitation-true-reward"),
}
FULL = {"steps": 1_000_000, "seeds": 3}
TARGETS = {"ratio_vs_imitation": 1.3, "wall_ratio_vs_imitation": 0.6, "epoch_speedup": 5.0}
PREFRL_LABEL_SCHEDULE = "the whole budget due two reward updates before the end (since 2026-11-26)"
"""How prefrl spreads its labels. Until 2026-11-26 the budget was due at the last step, and a 700-label run
asked 697 and fitted 692 (imitation uses all 700): results from then are kept under ``earlier``."""
PREFRL_REWARD_VALIDATION = "each member's validation pairs fixed per pair across fits (since 2026-11-26)"
"""How prefrl's reward members hold out validation pairs. Before, a new split was drawn at each fit of the
warm-started members, which leaked and let the adaptive L2 fall towards zero: results from then are kept
under ``earlier``."""


@dataclass
class Args:
    steps: int = 1_000_000
    """Agent env steps per arm."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    labels: int = 700
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    cpu: str | None = None
    """Pin every arm to these CPUs (taskset -c), e.g. 1; default: not pinned."""
    max_minutes: float | None = None
    """Stop cleanly after this long (rerun the same command to go on)."""
    epoch_pairs: int = 700
    epoch_segment_length: int = 50
    epoch_repeats: int = 3
    epochs_timed: int = 5
    skip_epochs: bool = False
    report_only: bool = False
    runs_dir: Path = Path("benchmarks/runs/peers")
    records: Path = RESULTS / "peers_runs"
    """Each finished arm's ``result.json`` and ``metrics.csv``, and the epoch timings, kept here (commit it):
    a later sitting skips what it holds, and the report reads it when ``runs_dir`` is gone."""
    venv: Path | None = None
    """imitation's virtualenv (default: RUNS_DIR/imitation-venv)."""
    out: Path = RESULTS / "peers.json"


# --- imitation's virtualenv ---------------------------------------------------------------------------------


def ensure_imitation_venv(venv: Path) -> Path:
    """Builds (once) a virtualenv with imitation and returns its Python; exits with one line on failure.

    torch is held to our CPU wheel (``constraints.txt``), MuJoCo to our version (the same dynamics), numpy
    below 2 (gymnasium 0.29 and SB3 2.2 predate it).
    """
    python = venv / "bin" / "python"
    constraints = [f"mujoco=={metadata.version('mujoco')}", "numpy<2"]
    wanted = "\n".join([*IMITATION_PACKAGES, *constraints]) + "\n"
    marker = venv / ".peers-installed"
    if marker.exists() and marker.read_text() == wanted:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "imitation-venv.log"
    peer_constraints = venv.parent / "imitation-constraints.txt"
    peer_constraints.write_text("\n".join(constraints) + "\n")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
        + ["-c", str(peer_constraints), *IMITATION_PACKAGES],
    ]
    print(f"building imitation's virtualenv in {venv} (a few minutes; log: {log})", flush=True)
    with log.open("w") as f:
        for cmd in steps:
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            if code != 0:
                raise SystemExit(f"peers: `{' '.join(cmd[:5])} ...` failed (exit {code}); see {log}")
    marker.write_text(wanted)
    return python


def venv_versions(python: Path) -> dict[str, str | None]:
    names = ["imitation", "stable-baselines3", "gymnasium", "mujoco", "torch", "numpy"]
    code = f"import json, importlib.metadata as m; print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    return json.loads(subprocess.check_output([str(python), "-c", code], text=True))


# --- same task ----------------------------------------------------------------------------------------------


def parity(python: Path, work: Path) -> dict[str, Any]:
    """Steps both tasks with the same seeded random actions; the largest differences must be 0."""
    import gymnasium as gym

    import prefrl.envs  # noqa: F401  (registers prefrl/Hopper-v0)

    theirs_path = work / "parity_imitation.npz"
    subprocess.check_call([str(python), str(IMITATION_SCRIPT), "parity", str(theirs_path)])
    theirs = np.load(theirs_path)
    env = gym.make(ENV)
    actions = np.random.default_rng(0).uniform(-1, 1, (len(theirs["rewards"]), 3))
    obs, _ = env.reset(seed=3)
    all_obs, rewards = [obs], []
    for action in actions:
        obs, reward, _, _, _ = env.step(action)
        all_obs.append(obs)
        rewards.append(reward)
    result = {
        "steps": len(rewards),
        "max_abs_obs_diff": float(np.abs(np.array(all_obs) - theirs["obs"]).max()),
        "max_abs_reward_diff": float(np.abs(np.array(rewards) - theirs["rewards"]).max()),
    }
    if result["max_abs_obs_diff"] > 1e-9 or result["max_abs_reward_diff"] > 1e-9:
        raise SystemExit(f"peers: the two tasks differ ({result}); the comparison would not be fair")
    return result


# --- reward-model epochs ------------------------------------------------------------------------------------


def preference_set(pairs: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``pairs`` pairs of ``length``-step segments of a random policy on the task, oracle labels.

    Returns obs ``(P, 2, length + 1, obs_dim)`` (the last is the next observation, which imitation's
    trajectories carry), acts ``(P, 2, length, act_dim)``, rewards ``(P, 2, length)``, mu ``(P,)``.
    """
    import gymnasium as gym

    import prefrl.envs  # noqa: F401

    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    obs_l: list[np.ndarray] = []
    acts_l: list[np.ndarray] = []
    rews_l: list[np.ndarray] = []
    episode = 0
    while len(rews_l) < 2 * pairs:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        ep_obs, ep_acts, ep_rews, done = [obs], [], [], False
        while not done:
            action = rng.uniform(-1, 1, env.action_space.shape)
            obs, reward, terminated, truncated, _ = env.step(action)
            ep_obs.append(obs)
            ep_acts.append(action)
            ep_rews.append(reward)
            done = terminated or truncated
        for start in range(0, len(ep_rews) - length + 1, length):
            obs_l.append(np.array(ep_obs[start : start + length + 1]))
            acts_l.append(np.array(ep_acts[start : start + length]))
            rews_l.append(np.array(ep_rews[start : start + length]))
    order = rng.permutation(len(rews_l))[: 2 * pairs].reshape(pairs, 2)
    rewards = np.array(rews_l)[order]
    returns = rewards.sum(-1)
    mu = np.where(returns[:, 0] > returns[:, 1], 1.0, np.where(returns[:, 0] < returns[:, 1], 0.0, 0.5))
    return {
        "obs": np.array(obs_l)[order],
        "acts": np.array(acts_l)[order].astype(np.float32),
        "rewards": rewards,
        "mu": mu.astype(np.float32),
    }


def prefrl_epoch_seconds(
    data: dict[str, np.ndarray], epochs: int, repeats: int, seed: int = 0
) -> list[float]:
    """prefrl's default ensemble (3 MLPs of 64-64, batch 64), seconds per epoch of ``RewardEnsemble.fit``."""
    import gymnasium as gym
    import torch

    import prefrl.envs  # noqa: F401
    from prefrl.preference_dataset import PreferenceDataset
    from prefrl.reward_model import RewardEnsemble
    from prefrl.segments import Segment

    torch.set_num_threads(1)
    env = gym.make(ENV)
    dataset = PreferenceDataset()
    for obs, acts, rewards, mu in zip(data["obs"], data["acts"], data["rewards"], data["mu"]):
        left, right = (Segment(obs[i, :-1], acts[i], rewards[i]) for i in (0, 1))
        dataset.add(left, right, float(mu))
    times = []
    for r in range(seed, seed + repeats):
        rng = np.random.default_rng(r)
        ensemble = RewardEnsemble.for_spaces(env.observation_space, env.action_space)
        ensemble.fit(dataset, epochs=1, rng=rng)  # warm-up
        start = time.perf_counter()
        ensemble.fit(dataset, epochs=epochs, rng=rng)
        times.append((time.perf_counter() - start) / epochs)
    return times


def epoch_times(args: Args, python: Path) -> dict[str, Any]:
    path = args.records / "epoch_times.json"
    if path.exists():
        return json.loads(path.read_text())
    data = preference_set(args.epoch_pairs, args.epoch_segment_length)
    pairs_path = args.runs_dir / "epoch_pairs.npz"
    np.savez(pairs_path, obs=data["obs"], acts=data["acts"], rewards=data["rewards"], mu=data["mu"])
    # The repeats alternate between the libraries, so that a busy moment of the machine falls on both.
    ours: list[float] = []
    theirs: list[dict[str, Any]] = []
    for r in range(args.epoch_repeats):
        ours += prefrl_epoch_seconds(data, args.epochs_timed, repeats=1, seed=r)
        theirs_path = args.runs_dir / f"epoch_times_imitation_{r}.json"
        cmd = [str(python), str(IMITATION_SCRIPT), "epochs", str(pairs_path), "--out", str(theirs_path)]
        cmd += ["--epochs", str(args.epochs_timed), "--repeats", "1", "--seed", str(r)]
        subprocess.check_call(_pinned(cmd, args.cpu), env=_one_thread_env())
        theirs.append(json.loads(theirs_path.read_text()))
    n_val = int(args.epoch_pairs / math.e)
    result = {
        "pairs": args.epoch_pairs,
        "segment_length": args.epoch_segment_length,
        "epochs_timed": args.epochs_timed,
        "threads": 1,
        "prefrl": {
            "model": "RewardEnsemble of 3 MLPs (64, 64), batch 64 (defaults)",
            "seconds": ours,
            # each member: one pass over a bootstrap sample of the 1 - 1/e not held out, then validation
            "pairs_per_epoch": 3 * (args.epoch_pairs - n_val),
        },
        "imitation": {**theirs[0]["default"], "seconds": [t["default"]["seconds"][0] for t in theirs]},
        "imitation_ensemble_3": {
            **theirs[0]["ensemble_3"],
            "seconds": [t["ensemble_3"]["seconds"][0] for t in theirs],
        },
    }
    write_json(path, result)
    return result


# --- the arms -----------------------------------------------------------------------------------------------


def _one_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _pinned(cmd: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if cpu else cmd


def arm_dir(args: Args, arm: str, seed: int) -> Path:
    return args.runs_dir / f"{arm}-{args.steps}-s{seed}"


def record_dir(args: Args, arm: str, seed: int) -> Path:
    return args.records / arm_dir(args, arm, seed).name


def finished_result(args: Args, arm: str, seed: int) -> Path | None:
    """A finished arm's ``result.json``: its kept record's, else its run directory's (None: unfinished)."""
    for folder in (record_dir(args, arm, seed), arm_dir(args, arm, seed)):
        if (folder / "result.json").exists():
            return folder / "result.json"
    return None


def keep_record(args: Args, arm: str, seed: int) -> None:
    """Copy a finished arm's ``metrics.csv`` and ``result.json`` to its record (the result last: the record
    counts once it is there)."""
    source, record = arm_dir(args, arm, seed), record_dir(args, arm, seed)
    if (record / "result.json").exists() or not (source / "result.json").exists():
        return
    record.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "result.json"):
        shutil.copyfile(source / name, record / f".{name}.tmp")
        os.replace(record / f".{name}.tmp", record / name)


def arm_command(args: Args, arm: str, seed: int, python: Path) -> list[str]:
    run_dir = arm_dir(args, arm, seed)
    if arm.startswith("prefrl"):
        prefrl = [sys.executable, "-m", "prefrl"]
        if (run_dir / "config.json").exists():
            return [*prefrl, "resume", str(run_dir), "--no-progress-bar"]
        teacher = arm.removeprefix("prefrl-")
        cmd = [*prefrl, "train", "--env", ENV, "--algo", "ppo", "--teacher", teacher, "--seed", str(seed)]
        cmd += ["--steps", str(args.steps), "--run-dir", str(run_dir), "--no-progress-bar", "--threads", "1"]
        return cmd + (["--labels", str(args.labels)] if teacher != "true-reward" else [])
    kind = arm.removeprefix("imitation-")
    cmd = [str(python), str(IMITATION_SCRIPT), "train", kind, "--steps", str(args.steps), "--seed", str(seed)]
    return cmd + ["--labels", str(args.labels), "--out", str(run_dir)]


def run_arm(args: Args, arm: str, seed: int, python: Path, deadline: float) -> bool:
    """Runs one arm to the end (True) or until ``deadline`` (False); its result.json when it ends."""
    run_dir = arm_dir(args, arm, seed)
    if finished_result(args, arm, seed) is not None:
        keep_record(args, arm, seed)  # an arm finished before its record was kept
        return True
    cpu_file = run_dir.with_suffix(".cpu_s")  # CPU seconds over all sittings (the machine may be busy)
    if arm.startswith("imitation") and run_dir.exists():
        shutil.rmtree(run_dir)  # imitation cannot resume a run: start it over
        cpu_file.unlink(missing_ok=True)
    cmd = arm_command(args, arm, seed, python)
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{arm} seed {seed}: {' '.join(cmd)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("ab") as f:
        proc = subprocess.Popen(
            _pinned(cmd, args.cpu), stdout=f, stderr=subprocess.STDOUT, env=_one_thread_env()
        )
        while proc.poll() is None and time.time() < deadline:
            time.sleep(2)
        if proc.poll() is None:  # out of time: prefrl checkpoints on SIGINT; imitation starts over next time
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _add_cpu_seconds(cpu_file, before)
            print(f"stopped {arm} seed {seed} (rerun the same command to go on)", flush=True)
            return False
    _add_cpu_seconds(cpu_file, before)
    if proc.returncode != 0:
        raise SystemExit(f"peers: {arm} seed {seed} failed (exit {proc.returncode}); see {log}")
    write_json(run_dir / "result.json", arm_result(args, arm, seed))
    keep_record(args, arm, seed)
    return True


def _add_cpu_seconds(path: Path, before: resource.struct_rusage) -> None:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    path.write_text(f"{(float(path.read_text()) if path.exists() else 0.0) + used:.1f}\n")


def arm_result(args: Args, arm: str, seed: int) -> dict[str, Any]:
    from prefrl.checkpoint import latest_checkpoint, read_state
    from prefrl.metrics import final_true_return, read_metrics

    run_dir = arm_dir(args, arm, seed)
    metrics = read_metrics(run_dir / "metrics.csv")
    library = arm.split("-", 1)[0]
    if library == "prefrl":
        checkpoint = latest_checkpoint(run_dir)
        assert checkpoint is not None
        state = read_state(checkpoint)
        agent_steps, wall_s = int(state["step"]), float(state["wall_s"])
        labels = int(np.nanmax(metrics["labels"])) if arm == "prefrl-oracle" else 0
        extra: dict[str, Any] = {}
    else:
        own = json.loads((run_dir / "imitation_result.json").read_text())
        agent_steps, wall_s, labels = int(own["agent_steps"]), float(own["wall_s"]), int(own.get("labels", 0))
        extra = {k: own[k] for k in ("reward_accuracy", "sampling_steps") if k in own}
    try:
        final: float | None = round(final_true_return(run_dir / "metrics.csv", agent_steps), 1)
    except ValueError:  # no training episode ended in the last 10 % (only in tiny smoke runs)
        final = None
    return {
        "library": library,
        "arm": arm,
        "teacher": "true-reward" if arm.endswith("true-reward") else "oracle",
        "seed": seed,
        "steps": args.steps,
        "agent_steps": agent_steps,
        "labels": labels,
        "final_true_return": final,
        "wall_s": round(wall_s, 1),
        "cpu_s": float(run_dir.with_suffix(".cpu_s").read_text()),
        "cpu": args.cpu,
        "run_dir": str(run_dir),
        **extra,
    }


# --- summary and report -------------------------------------------------------------------------------------


def _ratio(numerator: list[float], denominator: list[float]) -> float | None:
    if not numerator or not denominator or np.mean(denominator) <= 0:
        return None  # a non-positive baseline makes a ratio meaningless
    return round(float(np.mean(numerator) / np.mean(denominator)), 3)


BOOTSTRAP_REPS = 10_000


def bootstrap_quotient_ci(
    prefrl: tuple[list[float], list[float]],
    imitation: tuple[list[float], list[float]],
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> list[float] | None:
    """95 % percentile-bootstrap interval of ``ratio_vs_imitation`` over seeds.

    Each library's seeds are resampled with replacement on their own (a seed's preference and true-reward
    arms stay together, as they share a seed), its ratio of means recomputed, and the quotient of the two
    libraries' ratios taken. With three seeds a library the interval is wide: it says how much the headline
    figure could move with other seeds, not more.

    Args:
        prefrl, imitation: ``(preference arm finals, true-reward arm finals)`` per seed, in seed order.
    """
    rng = np.random.default_rng(seed)

    def ratios(pref: list[float], base: list[float]) -> np.ndarray:
        idx = rng.integers(0, len(pref), size=(reps, len(pref)))
        return np.asarray(pref)[idx].mean(axis=1) / np.asarray(base)[idx].mean(axis=1)

    if min(len(prefrl[0]), len(imitation[0])) < 2:
        return None
    quotients = ratios(*prefrl) / ratios(*imitation)
    low, high = np.percentile(quotients[np.isfinite(quotients)], [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def summarize(runs: list[dict[str, Any]], epochs: dict[str, Any] | None) -> dict[str, Any]:
    """Per library: final return and wall ratios of its preference arm to its own true-reward arm.

    Only seeds where both arms of a library finished count; ratios are of means over those seeds, each
    seed's own ratio listed beside them, and the quotient of the two libraries' ratios gets a 95 %
    bootstrap interval over seeds (:func:`bootstrap_quotient_ci`). The epoch figures are medians over
    repeats of each library's default reward model.
    """
    by_arm_seed = {(r["arm"], r["seed"]): r for r in runs}
    summary: dict[str, Any] = {}
    finals: dict[str, tuple[list[float], list[float]]] = {}
    for library, (pref_arm, base_arm) in PAIRS.items():
        seeds = sorted(
            s
            for a, s in by_arm_seed
            if a == pref_arm
            and (base_arm, s) in by_arm_seed
            and by_arm_seed[(a, s)]["final_true_return"] is not None
            and by_arm_seed[(base_arm, s)]["final_true_return"] is not None
        )
        pref = [by_arm_seed[(pref_arm, s)] for s in seeds]
        base = [by_arm_seed[(base_arm, s)] for s in seeds]
        summary[f"{library}_seeds"] = seeds
        finals[library] = (
            [float(r["final_true_return"]) for r in pref],
            [float(r["final_true_return"]) for r in base],
        )
        summary[f"{library}_ratio"] = _ratio(*finals[library])
        summary[f"{library}_seed_ratios"] = [
            round(p / b, 3) if b > 0 else None for p, b in zip(*finals[library], strict=True)
        ]
        summary[f"{library}_wall_ratio"] = _ratio(
            [float(r["wall_s"]) for r in pref],
            [float(r["wall_s"]) for r in base],
        )
        if all("cpu_s" in r for r in pref + base):  # less sensitive than wall time to a busy machine
            summary[f"{library}_cpu_ratio"] = _ratio(
                [float(r["cpu_s"]) for r in pref], [float(r["cpu_s"]) for r in base]
            )
    for library in ("prefrl", "imitation"):
        seconds = epochs[library]["seconds"] if epochs else None
        summary[f"{library}_epoch_s"] = round(float(np.median(seconds)), 4) if seconds else None
    if epochs:
        summary["imitation_ensemble_3_epoch_s"] = round(
            float(np.median(epochs["imitation_ensemble_3"]["seconds"])), 4
        )

    def quotient(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    summary["ratio_vs_imitation"] = quotient(summary["prefrl_ratio"], summary["imitation_ratio"])
    summary["ratio_vs_imitation_ci95"] = (
        bootstrap_quotient_ci(finals["prefrl"], finals["imitation"])
        if summary["ratio_vs_imitation"] is not None  # a non-positive baseline: no ratio, no interval
        else None
    )
    summary["wall_ratio_vs_imitation"] = quotient(
        summary["prefrl_wall_ratio"], summary["imitation_wall_ratio"]
    )
    summary["epoch_speedup"] = quotient(summary["imitation_epoch_s"], summary["prefrl_epoch_s"])
    summary["epoch_speedup_same_ensemble"] = quotient(
        summary.get("imitation_ensemble_3_epoch_s"), summary["prefrl_epoch_s"]
    )
    met: dict[str, bool | None] = {}
    for key, target in TARGETS.items():
        value = summary[key]
        met[key] = None if value is None else (value <= target if key.startswith("wall") else value >= target)
    summary["targets"] = TARGETS
    summary["targets_met"] = met
    return summary


def is_partial(runs: list[dict[str, Any]]) -> bool:
    """True unless all four arms finished at ≥ 1M steps for at least 3 common seeds."""
    full = [r for r in runs if int(r["steps"]) >= FULL["steps"]]
    seeds = set.intersection(*({r["seed"] for r in full if r["arm"] == arm} for arm in ARMS))
    return len(seeds) < FULL["seeds"]


def report(args: Args, epochs: dict[str, Any] | None, extra: dict[str, Any]) -> None:
    runs = []
    for seed in args.seeds:
        for arm in ARMS:
            path = finished_result(args, arm, seed)
            if path is not None:
                metrics = path.parent / "metrics.csv"
                curve = os.path.relpath(metrics.resolve(), ROOT) if metrics.exists() else None
                runs.append({**json.loads(path.read_text()), "metrics": curve})
    summary = summarize(runs, epochs)
    missing = [f"{a} s{s}" for s in args.seeds for a in args.arms if finished_result(args, a, s) is None]
    settings = {
        "steps": args.steps,
        "seeds": args.seeds,
        "labels": args.labels,
        "cpu": args.cpu or "not pinned",
        "torch_threads": 1,
        "prefrl_label_schedule": PREFRL_LABEL_SCHEDULE,
        "prefrl_reward_validation": PREFRL_REWARD_VALIDATION,
    }
    data = {
        "benchmark": "peers",
        "partial": is_partial(runs),
        "done": [f"{r['arm']} s{r['seed']} ({r['agent_steps']} steps)" for r in runs],
        "missing": missing,
        "task": (
            "prefrl/Hopper-v0: Hopper, no control cost, no termination, no alive bonus, reward = forward "
            "velocity + (torso z - 0.7), 1,000-step episodes; prefrl on gymnasium 1.x Hopper-v5, imitation "
            "on gymnasium 0.29 Hopper-v4 with the same settings and height term, same MuJoCo build"
        ),
        "final": "mean true return of the training episodes finished in the last 10 % of the agent's steps",
        "times": (
            "wall_s: elapsed seconds as each library counts them (prefrl: from its checkpoints, over all "
            "sittings; imitation: from building the envs to the end of training); cpu_s: user + system "
            "seconds of the arm's processes, less sensitive than wall time to other work on the machine"
        ),
        "settings": {
            **settings,
            "prefrl": "prefrl train defaults for prefrl/Hopper-v0 (see the runs' spec.json)",
            "imitation": (
                "imitation 1.0.1, values of src/imitation/scripts/config/train_preference_comparisons.py: "
                "train_defaults (fragment_length 100, num_iterations 5, initial_comparison_frac 0.1, "
                "reward epochs 3, initial_epoch_multiplier 200, hyperbolic query schedule, "
                "SyntheticGatherer temperature 1, BasicRewardNet with RunningNorm in and out, no active "
                "selection) and named config seals_hopper (PPO: 8 envs, n_steps 256, batch 512, 20 epochs, "
                "lr 3.9e-4, gamma 0.995, gae 0.98, clip 0.1, ent 1.0e-3, vf 0.20, grad norm 0.9, ReLU "
                "64-64); DummyVecEnv instead of the script's SubprocVecEnv (at most two cores per arm); "
                "total_timesteps = steps * 5/6 because PreferenceComparisons.train trains the agent "
                "num_iterations + 1 times (agent_steps records what each agent took)"
            ),
        },
        **extra,
        "epochs": epochs,
        "runs": runs,
        "summary": summary,
        "machine": machine_info(),
        "earlier": earlier_results(args.out, settings),
    }
    write_json(args.out, data)
    plot(args, runs, epochs)
    print(json.dumps(summary, indent=2), flush=True)


def earlier_results(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Results published at ``out`` under other settings (CPU set, steps, seeds, labels), kept beside the
    new ones rather than overwritten: the earlier ones first, then the one ``out`` holds now if its
    settings differ from ``settings``."""
    if not out.exists():
        return []
    previous = json.loads(out.read_text())
    earlier: list[dict[str, Any]] = previous.get("earlier", [])
    old = {key: previous["settings"].get(key) for key in settings}
    if old != settings and previous.get("runs"):
        measured = previous.get("machine", {}).get("date")
        earlier.append(
            {"settings": old, "measured": measured, "summary": previous["summary"], "runs": previous["runs"]}
        )
    return earlier


def plot(args: Args, runs: list[dict[str, Any]], epochs: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prefrl.metrics import read_metrics

    fig, (ax_ret, ax_ep) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(2, 1))
    colours = dict(zip(ARMS, ("tab:blue", "tab:cyan", "tab:red", "tab:orange")))
    labelled = set()
    for r in runs:
        if r["metrics"] is None:  # an arm recorded before its curve was kept
            continue
        m = read_metrics(ROOT / str(r["metrics"]))
        arm = str(r["arm"])
        label = None if arm in labelled else arm
        labelled.add(arm)
        ax_ret.plot(m["step"], m["true_return"], color=colours[arm], alpha=0.8, lw=1, label=label)
    ax_ret.set_xlabel("agent env steps")
    ax_ret.set_ylabel("true episode return")
    seeds = sorted({int(r["seed"]) for r in runs})
    cpus = args.cpu or "all"
    ax_ret.set_title(f"{ENV}, {args.labels} labels, {args.steps:,} steps, seeds {seeds}, CPUs {cpus} per arm")
    ax_ret.legend(fontsize=8)
    if epochs:
        names = ["prefrl", "imitation", "imitation_ensemble_3"]
        seconds = [float(np.median(epochs[n]["seconds"])) for n in names]
        ax_ep.bar(["prefrl\n(3 MLPs)", "imitation\n(default)", "imitation\n(3 members)"], seconds)
        ax_ep.set_ylabel("seconds per epoch")
        ax_ep.set_title(f"reward-model fit, {epochs['pairs']} pairs of {epochs['segment_length']} steps")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main(args: Args) -> None:
    unknown = set(args.arms) - set(ARMS)
    if unknown:
        raise SystemExit(f"peers: unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    if args.cpu and shutil.which("taskset") is None:
        raise SystemExit("peers: --cpu needs taskset (util-linux); leave it out to run unpinned")
    if args.report_only:  # from what is recorded: no virtualenv to build, nothing measured
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        pinned = previous.get("settings", {}).get("cpu")
        if args.cpu is None and pinned not in (None, "not pinned"):
            args.cpu = pinned  # a report runs nothing: the runs' CPU set is the one they recorded
        timed = args.records / "epoch_times.json"
        epochs = json.loads(timed.read_text()) if timed.exists() else previous.get("epochs")
        report(args, epochs, {key: previous.get(key) for key in ("parity", "imitation_venv")})
        return
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf
    python = ensure_imitation_venv(args.venv or args.runs_dir / "imitation-venv")
    extra = {"parity": parity(python, args.runs_dir), "imitation_venv": venv_versions(python)}
    measured = (args.records / "epoch_times.json").exists()
    epochs = epoch_times(args, python) if measured or not args.skip_epochs else None
    for seed in args.seeds:
        for arm in args.arms:
            if not run_arm(args, arm, seed, python, deadline):
                break
            report(args, epochs, extra)
        else:
            continue
        break
    report(args, epochs, extra)


if __name__ == "__main__":
    main(tyro.cli(Args))
