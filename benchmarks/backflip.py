"""The Hopper backflip taught through the labeling GUI (Christiano et al. 2017, §3.2: 900 queries).

The whole human path runs, with a scripted person: ``prefrl train --teacher human`` posts queries to the
run's database, ``prefrl label`` (a separate process) renders their clips and serves them, and a scripted
labeler claims pairs and answers over HTTP at a person's pace (3-5 s per answer) and with a person's noise
(BPref's stochastic and mistake models, about 10 % wrong), preferring the clip closer to a landed airborne
backflip (:func:`~prefrl.envs.backflip_judge.backflip_progress`). The final policy is then run for a few
episodes and its landed airborne backflips are counted from the simulator state by the strict judge
(:func:`~prefrl.envs.backflip_judge.judge_turns`), beside its airborne backward turns, landed or not, and
its full backward turns however made.

Writes ``benchmarks/results/backflip.json`` (``{runs: [{algo, labels, steps, seed, backflips_per_episode,
airborne_turns_per_episode, backward_turns_per_episode, ...}], summary, judge, machine}``), ``backflip.mp4``
(the evaluation episode with most backflips, then most airborne turns) and ``backflip.png`` (learning
curve: the true return is the net backward rotation in radians). Target: ≥ 1 landed airborne backflip per
episode with ≤ 900 labels.

    python -m benchmarks.backflip [--labels 900] [--steps 2000000] [--algo ppo] [--n-envs 8]
    python -m benchmarks.backflip --labels 20 --steps 4096 --out /tmp/backflip.json   # a smoke test

A run directory that already holds this run is resumed (``prefrl resume``); a finished one is only evaluated.
``--evaluate-only`` evaluates any backflip run (e.g. one a person taught) without training it further.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from prefrl import algos
from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.cli import stop_signals_checkpoint
from prefrl.envs.backflip import BACKFLIP_ID, HORIZON
from prefrl.envs.backflip_judge import (
    BackflipRule,
    backflip_progress,
    count_backward_turns,
    judge_turns,
)
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.clips import SegmentRenderer, encode_mp4
from prefrl.labeling_gui.scripted import NoisyChoice, train_with_scripted_person

TARGET_BACKFLIPS, TARGET_LABELS = 1.0, 900


@dataclass
class Args:
    labels: int = 900
    """Label budget (the paper's human count for the backflip)."""
    steps: int = 2_000_000
    algo: str = "ppo"
    seed: int = 0
    n_envs: int | None = None
    wait_for_labels: int | None = None
    """Answers needed before RL starts (default: all initial labels)."""
    reward_update_interval: int = 10_000
    eval_episodes: int = 5
    port: int = 8765
    clips: bool = True
    """Render the clips of every query, as for a person (off: the labeler needs no video)."""
    pace_s: tuple[float, float] = (3.0, 5.0)
    """Seconds the scripted person takes per answer, drawn uniformly (App. B: 3-5 s per comparison)."""
    person_beta: float = 20.0
    """The person's BPref rationality on backflip-progress differences (stochastic teacher)."""
    person_epsilon: float = 0.05
    """The person's BPref mistake rate; with the stochastic part, about 10 % of answers are wrong."""
    run_dir: Path = Path("benchmarks/runs/backflip")
    out: Path = RESULTS / "backflip.json"
    evaluate_only: bool = False
    """Only evaluate the run's latest checkpoint (e.g. a run taught by a person); train nothing."""


def _python() -> list[str]:
    return [sys.executable, "-m", "prefrl"]


def train_command(args: Args) -> list[str] | None:
    """``prefrl train`` (or ``resume``) for this run; None when it is already complete."""
    checkpoint = latest_checkpoint(args.run_dir)
    if checkpoint is not None and read_state(checkpoint)["step"] >= args.steps:
        return None
    if (args.run_dir / "config.json").exists():
        return [*_python(), "resume", str(args.run_dir)]
    cmd = [*_python(), "train", "--env", BACKFLIP_ID, "--algo", args.algo, "--teacher", "human",
           "--labels", str(args.labels), "--steps", str(args.steps), "--seed", str(args.seed),
           "--reward-update-interval", str(args.reward_update_interval), "--run-dir", str(args.run_dir),
           "--no-progress-bar"]  # fmt: skip
    if args.n_envs:
        cmd += ["--n-envs", str(args.n_envs)]
    if args.wait_for_labels:
        cmd += ["--wait-for-labels", str(args.wait_for_labels)]
    return cmd


def train_with_scripted_labeler(args: Args) -> float:
    """Run trainer, labeling server and scripted labeler together until the trainer ends; returns wall s."""
    cmd = train_command(args)
    if cmd is None:
        return 0.0
    person = NoisyChoice(
        lambda segment: backflip_progress(segment.states),
        beta=args.person_beta,
        epsilon=args.person_epsilon,
        rng=np.random.default_rng(args.seed),
    )
    start = time.time()
    print(" ".join(cmd[2:]), flush=True)
    log = args.run_dir / "benchmark.log"
    code = train_with_scripted_person(
        cmd,
        args.run_dir,
        person,
        log=log,
        port=args.port,
        clips=args.clips,
        pace_s=args.pace_s,
        rng=np.random.default_rng(args.seed + 1),
    )
    if code != 0:
        raise RuntimeError(f"training failed (exit {code}); see {log}")
    return time.time() - start


def evaluate(args: Args) -> tuple[list[int], list[int], list[int], np.ndarray]:
    """Run the final policy for ``eval_episodes`` episodes (deterministic actions).

    Returns:
        Per episode, landed airborne backflips and airborne backward turns, landed or not
        (:func:`~prefrl.envs.backflip_judge.judge_turns`), and full backward turns however made
        (:func:`~prefrl.envs.backflip_judge.count_backward_turns`); and the states of the episode with most
        backflips (then most airborne turns).
    """
    from stable_baselines3.common.vec_env import VecNormalize

    from prefrl.environment import make_vec_env

    checkpoint = latest_checkpoint(args.run_dir)
    if checkpoint is None:
        raise SystemExit(
            f"{args.run_dir} holds no checkpoint to evaluate (run directories are not committed): train one "
            "with `python -m benchmarks.backflip`, or pass the run with --run-dir"
        )
    config = json.loads((args.run_dir / "config.json").read_text())
    base = make_vec_env(BACKFLIP_ID, 1, args.seed + 10_000)
    venv = base
    if (checkpoint / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), base)
        venv.training, venv.norm_reward = False, False
    agent = algos.ALGO_CLASSES[config["algo"]].load(checkpoint / "agent.zip", device="cpu")
    flips, airborne, turns, best = [], [], [], np.zeros((0, 12))
    for _ in range(args.eval_episodes):
        obs = venv.reset()
        states = [base.reset_infos[0]["sim_state"]]
        for _ in range(HORIZON):
            action, _ = agent.predict(np.asarray(obs), deterministic=True)
            obs, _, dones, infos = venv.step(action)
            states.append(infos[0]["sim_state"])
            if dones[0]:
                break
        episode = np.array(states)
        judged = judge_turns(episode)
        flips.append(sum(turn.is_backflip for turn in judged))
        airborne.append(sum(turn.airborne for turn in judged))
        turns.append(count_backward_turns(episode))
        if (flips[-1], airborne[-1]) >= max(zip(flips, airborne)) or not len(best):
            best = episode
    venv.close()
    return flips, airborne, turns, best


def earlier_published(out: Path) -> list[dict[str, object]]:
    """Figures published before under ``out`` with another measure, to keep beside the new ones."""
    if not out.exists():
        return []
    old = json.loads(out.read_text())
    if "earlier_published" in old:
        return list(old["earlier_published"])
    first = old.get("summary", {}).get("earlier_published")  # the file's format before the list
    return [{**first, "runs": old.get("runs", []), "note": old.get("note", "")}] if first else []


def main(args: Args) -> None:
    earlier = earlier_published(args.out)
    wall_s = 0.0 if args.evaluate_only else train_with_scripted_labeler(args)
    flips, airborne, turns, best = evaluate(args)
    clip = args.out.with_suffix(".mp4")
    renderer = SegmentRenderer(BACKFLIP_ID, size=(320, 240))
    try:
        encode_mp4(renderer.frames(best), clip, renderer.fps)
    finally:
        renderer.close()
    plot = args.out.with_suffix(".png")
    from prefrl.plotting import plot_runs

    plot_runs([args.run_dir], plot, title="Hopper backflip, scripted teacher through the labeling GUI")
    with LabelStore(args.run_dir / "labels.sqlite") as store:
        records = store.answer_records()
    config = json.loads((args.run_dir / "config.json").read_text())
    state = read_state(latest_checkpoint(args.run_dir))  # type: ignore[arg-type]
    per_episode = float(np.mean(flips))
    labels = sum(r["choice"] != "skip" for r in records)
    run = {
        "algo": config["algo"],
        "labels": labels,
        "answers": len(records),
        "steps": int(state["step"]),
        "seed": config["seed"],
        "backflips_per_episode": per_episode,
        "airborne_turns_per_episode": float(np.mean(airborne)),
        "backward_turns_per_episode": float(np.mean(turns)),
        "backflips_each_episode": flips,
        "airborne_turns_each_episode": airborne,
        "backward_turns_each_episode": turns,
        "labelers": sorted({r["labeler"] for r in records}),
        "wall_s_training": round(float(state.get("wall_s", 0.0)), 1),
        "run_dir": str(args.run_dir),
    }
    write_json(
        args.out,
        {
            "task": BACKFLIP_ID,
            "runs": [run],
            "summary": {
                "backflips_per_episode": per_episode,
                "airborne_turns_per_episode": float(np.mean(airborne)),
                "backward_turns_per_episode": float(np.mean(turns)),
                "labels": labels,
                "target": {"backflips_per_episode": TARGET_BACKFLIPS, "max_labels": TARGET_LABELS},
                "target_met": per_episode >= TARGET_BACKFLIPS and labels <= TARGET_LABELS,
            },
            "judge": {"rule": BackflipRule.__doc__, **vars(BackflipRule())},
            "teacher": (
                f"scripted person preferring backflip_progress (BPref stochastic beta={args.person_beta}, "
                f"mistake epsilon={args.person_epsilon}), {args.pace_s[0]}-{args.pace_s[1]} s per answer, "
                "through the labeling GUI's HTTP API"
            )
            if not args.evaluate_only
            else "as recorded in the run's labels.sqlite",
            "clips_rendered": args.clips,
            "earlier_published": earlier,
            "wall_s_this_session": round(wall_s, 1),
            "clip": clip.name,
            "plot": plot.name,
            "machine": machine_info(),
        },
    )
    print(
        f"{per_episode:.2f} landed airborne backflips, {np.mean(airborne):.2f} airborne backward turns "
        f"(landed or not) and {np.mean(turns):.2f} backward turns however made per episode "
        f"with {labels} labels; clip {clip}"
    )


if __name__ == "__main__":
    with stop_signals_checkpoint():  # `kill` or Ctrl-C, even when started with `&`: runs checkpoint
        main(tyro.cli(Args))
