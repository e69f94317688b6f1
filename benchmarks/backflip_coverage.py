"""Is a learned backflip reward wrong because its clips never showed a flip? (issue 11, a diagnosis)

Every agent taught the backflip by preferences so far learned something else (rolling, lying upside down,
turning in the air and crashing), while PPO on the scripted person's score itself lands about 15 flips an
episode (``--ceiling``). ``benchmarks.reward_diagnostics --against`` the ceiling shows why in part: each
taught run's final reward pays the ceiling's landed flips *less* than its own agent's behaviour. A taught
run's clips come from its own agent, so its reward never saw a flip; is that the whole story, or can the
reward model not learn what the person wants even from clips that show it?

This benchmark answers it with the online runs' own reward model and settings, offline:

1. **Behaviour.** It plays episodes of several sources: the ceiling's final agents (landed flips), the final
   agents of taught runs (what the online runs learned instead) and a random policy (what a run starts from).
2. **Labels.** It cuts those episodes into segments of the person's length (75 steps, 1.5 s) at random
   offsets, draws ``--labels`` random pairs and answers each as the scripted person's score
   (:func:`~prefrl.envs.backflip_judge.backflip_progress`) orders them, without noise
   (:class:`~prefrl.envs.backflip.BackflipTeacher`).
3. **Reward.** It fits the ensemble the runs build (``--spec-from``'s settings) on those pairs and measures,
   on fresh episodes of each source, the learned return against the person's score: a reward that has
   learned the person's wish ranks the ceiling's episodes first.
4. **Agent.** It trains a new PPO agent on that reward, frozen (``prefrl train --teacher frozen``), and judges
   its final policy as ``benchmarks.backflip`` does. Flips landed here, and not online, would say the online
   runs lack clips of flips (exploration), not a reward model able to learn them.

Writes ``benchmarks/results/backflip_coverage.json`` (and ``backflip_coverage_filmstrip.png``). Resumable: a
fitted reward and a trained agent in ``--run-dir`` are reused.

    python -m benchmarks.backflip_coverage [--labels 900] [--steps 1000000]
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from benchmarks import backflip
from benchmarks.common import RESULTS, Episode, filmstrip, machine_info, play_final_policy, write_json
from prefrl.checkpoint import latest_checkpoint, write_checkpoint
from prefrl.config import TrainConfig
from prefrl.environment import make_vec_env
from prefrl.envs.backflip import BACKFLIP_ID, BackflipTeacher
from prefrl.envs.backflip_judge import backflip_progress
from prefrl.labeling_gui.clips import SegmentRenderer
from prefrl.observations import observation_kind
from prefrl.preference_dataset import PreferenceDataset, preference_to_mu
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Segment
from prefrl.spec import resolve
from prefrl.teachers import Preference

RUNS = Path("benchmarks/runs")
RANDOM = "random"
"""The source name of a policy drawing uniform random actions."""


@dataclass
class Args:
    sources: list[str] = field(
        default_factory=lambda: [
            str(RUNS / "backflip-ceiling-net-ent"),
            str(RUNS / "backflip-ceiling-net"),
            str(RUNS / "backflip-ppo-900-touchdown-clips"),
            str(RUNS / "backflip-ppo-900-touchdown-noisefree"),
            RANDOM,
        ]
    )
    """Run directories whose final agents are played (stochastic actions, as in training), and ``random``."""
    spec_from: Path = RUNS / "backflip-ppo-900-touchdown-clips"
    """A taught run whose reward-model settings (ensemble, inputs, segment length) the fit uses."""
    episodes: int = 6
    """Episodes per source for the labelled segments (and as many fresh ones for the check)."""
    labels: int = 900
    epochs: int = 100
    """Passes of each member over its bootstrap sample (an online run's pre-training is 50, then 10 per
    update over many updates)."""
    steps: int = 1_000_000
    """Steps of the new agent on the frozen reward (0: fit and check the reward only)."""
    agent_kwargs: list[str] = field(default_factory=lambda: ["ent_coef=0.01"])
    seed: int = 0
    run_dir: Path = RUNS / "backflip-coverage"
    out: Path = RESULTS / "backflip_coverage.json"


def play_random(config: TrainConfig, episodes: int, seed: int) -> list[Episode]:
    """Episodes of uniform random actions in the run's env, recorded as :func:`play_final_policy` does."""
    venv = make_vec_env(config.env, 1, seed, config.make_kwargs() or None)
    rng = np.random.default_rng(seed)
    low, high = venv.action_space.low, venv.action_space.high  # type: ignore[attr-defined]
    played = []
    for _ in range(episodes):
        obs = venv.reset()
        states, observations, actions, total, done = [venv.reset_infos[0]["sim_state"]], [], [], 0.0, False
        while not done:
            action = rng.uniform(low, high)[None].astype(np.float32)
            observations.append(np.asarray(obs)[0])
            actions.append(action[0])
            obs, rewards, dones, infos = venv.step(action)
            total, done = total + float(rewards[0]), bool(dones[0])
            states.append(infos[0]["sim_state"])
        played.append(Episode(np.array(states), total, np.array(observations), np.array(actions)))
    venv.close()
    return played


def play(source: str, config: TrainConfig, episodes: int, seed: int) -> list[Episode]:
    if source == RANDOM:
        return play_random(config, episodes, seed)
    return play_final_policy(Path(source), episodes, seed, deterministic=False)


def cut(episodes: list[Episode], length: int, count: int, rng: np.random.Generator) -> list[Segment]:
    """``count`` segments of ``length`` steps at random offsets; a segment's states are those after each of
    its steps, as an online run keeps them."""
    segments = []
    for _ in range(count):
        episode = episodes[rng.integers(len(episodes))]
        start = int(rng.integers(len(episode.actions) - length + 1))
        steps = slice(start, start + length)
        states = episode.states[start + 1 : start + length + 1]
        obs, acts = episode.observations[steps], episode.actions[steps]
        segments.append(Segment(obs, acts, np.zeros(length), states))
    return segments


def label(segments: list[Segment], pairs: int, rng: np.random.Generator) -> tuple[PreferenceDataset, dict]:
    """Random pairs of ``segments`` answered by the noise-free scripted person (equal answers kept, as
    online; none is skipped)."""
    teacher, dataset = BackflipTeacher(), PreferenceDataset()
    answers = {"left_or_right": 0, "equal": 0}
    for _ in range(pairs):
        i, j = rng.choice(len(segments), 2, replace=False)
        preference = teacher.prefer(segments[i], segments[j])
        answers["equal" if preference == Preference.EQUAL else "left_or_right"] += 1
        dataset.add(segments[i], segments[j], preference_to_mu(preference))
    return dataset, answers


def fit_reward(args: Args, config: TrainConfig, rng: np.random.Generator) -> dict[str, object]:
    """Fit the ensemble on labelled pairs of every source's behaviour; saves it as a run's checkpoint that
    ``--teacher frozen --reward-from`` reads. Returns what the fit saw."""
    spec = resolve(config)
    ensemble = new_ensemble(config, args.seed)
    played = {source: play(source, config, args.episodes, args.seed + 1) for source in args.sources}
    per_source = -(-4 * args.labels // len(args.sources))  # about 4 distinct segments per pair drawn
    segments = [s for eps in played.values() for s in cut(eps, spec.segment_length, per_source, rng)]
    dataset, answers = label(segments, args.labels, rng)
    started = time.perf_counter()
    stats = ensemble.fit(dataset, epochs=args.epochs, rng=rng)
    steps = np.concatenate([s.obs for s in segments]), np.concatenate([s.acts for s in segments])
    ensemble.normalize(*steps)
    fit_s = time.perf_counter() - started

    args.run_dir.mkdir(parents=True, exist_ok=True)
    source_config = json.loads((args.spec_from / "config.json").read_text())
    (args.run_dir / "config.json").write_text(json.dumps(source_config | {"run_dir": str(args.run_dir)}))
    write_checkpoint(args.run_dir, 0, {"labels": args.labels}, lambda d: ensemble.save(d / "reward_model.pt"))
    fit = {
        "segments": len(segments),
        "segment_length": spec.segment_length,
        "answers": answers,
        "epochs": args.epochs,
        "validation_accuracy": round(stats.val_accuracy, 4),
        "fit_s": round(fit_s, 1),
    }
    (args.run_dir / "fit.json").write_text(json.dumps(fit))
    return fit


def new_ensemble(config: TrainConfig, seed: int) -> RewardEnsemble:
    """An unfitted reward ensemble as ``config``'s run builds it."""
    base = make_vec_env(config.env, 1, seed, config.make_kwargs() or None)
    ensemble = observation_kind(resolve(config)).ensemble(base)
    base.close()
    return ensemble


def fitted_reward(args: Args, config: TrainConfig) -> RewardEnsemble:
    """The ensemble :func:`fit_reward` saved in ``--run-dir``."""
    ensemble = new_ensemble(config, args.seed)
    checkpoint = latest_checkpoint(args.run_dir)
    assert checkpoint is not None
    ensemble.load(checkpoint / "reward_model.pt")
    return ensemble


def check_reward(args: Args, config: TrainConfig) -> dict[str, dict[str, float]]:
    """On fresh episodes of each source: the learned return and the person's score per episode."""
    ensemble = fitted_reward(args, config)
    checked = {}
    for source in args.sources:
        episodes = play(source, config, args.episodes, args.seed + 2)
        learned = [ensemble.reward(e.observations, e.actions).sum() for e in episodes]
        scores = [backflip_progress(e.states) for e in episodes]
        checked[Path(source).name] = {
            "learned_return_per_episode": round(float(np.mean(learned)), 1),
            "person_score_per_episode": round(float(np.mean(scores)), 2),
        }
    return checked


def train_agent(args: Args, config: TrainConfig) -> tuple[Path, float]:
    """A new PPO agent on the frozen reward (resumed if a run is there); returns its dir and the wall seconds
    its training took (all sessions)."""
    agent_dir = args.run_dir / "agent"
    cmd = [sys.executable, "-m", "prefrl"]
    if (agent_dir / "config.json").exists():
        cmd += ["resume", str(agent_dir), "--no-progress-bar"]
    else:
        cmd += [
            "train", "--env", config.env, "--algo", "ppo", "--teacher", "frozen",
            "--reward-from", str(args.run_dir), "--steps", str(args.steps), "--seed", str(args.seed),
            "--run-dir", str(agent_dir), "--no-progress-bar",
            *(["--env-kwargs", *config.env_kwargs] if config.env_kwargs else []),
            *(["--agent-kwargs", *args.agent_kwargs] if args.agent_kwargs else []),
        ]  # fmt: skip
    subprocess.run(cmd, check=True)
    with open(agent_dir / "metrics.csv") as metrics:
        return agent_dir, float(list(csv.DictReader(metrics))[-1]["wall_s"])


def judge_agent(agent_dir: Path, seed: int, strip: Path, ensemble: RewardEnsemble) -> dict[str, object]:
    """``benchmarks.backflip``'s judgement of the final policy (deterministic, 5 episodes), what the fitted
    reward and the person's score pay it, and a filmstrip of its first landed backflip (else airborne turn,
    else turn)."""
    evaluation = backflip.Args(run_dir=agent_dir, seed=seed)
    judged = backflip.evaluate(evaluation)
    played = judged.episodes
    learned = [ensemble.reward(e.observations, e.actions).sum() for e in played]
    renderer = SegmentRenderer(BACKFLIP_ID, size=(320, 240))
    try:
        title = f"PPO on a reward fitted on clips of flips: its first {judged.moment_kind}"
        frames = renderer.frames(judged.shown[judged.moment])
        filmstrip(frames, strip, fps=renderer.fps, count=12, title=title)
    finally:
        renderer.close()
    return {
        "backflips_per_episode": float(np.mean(judged.backflips)),
        "airborne_turns_per_episode": float(np.mean(judged.airborne_turns)),
        "backward_turns_per_episode": float(np.mean(judged.backward_turns)),
        "learned_return_per_episode": round(float(np.mean(learned)), 1),
        "person_score_per_episode": round(float(np.mean([backflip_progress(e.states) for e in played])), 2),
        "filmstrip": strip.name,
    }


def main(args: Args) -> None:
    missing = [
        s for s in [*args.sources, str(args.spec_from)] if s != RANDOM and not Path(s, "config.json").exists()
    ]
    if missing:
        raise SystemExit(
            f"no run in {', '.join(missing)} (run directories are not committed): train them first "
            "(python -m benchmarks.backflip --ceiling ...) or name others with --sources / --spec-from"
        )
    torch.set_num_threads(1)
    config = TrainConfig.load(args.spec_from / "config.json")
    rng = np.random.default_rng(args.seed)
    fit_file = args.run_dir / "fit.json"
    fit = json.loads(fit_file.read_text()) if fit_file.exists() else fit_reward(args, config, rng)
    result: dict[str, object] = {
        "benchmark": "backflip_coverage",
        "question": "can the taught runs' reward model learn the backflip from clips that show flips?",
        "sources": args.sources,
        "labels": args.labels,
        "teacher": "scripted person without noise (backflip_progress), random pairs of all sources' segments",
        "fit": fit,
        "reward_check": check_reward(args, config),
        "command": "python -m benchmarks.backflip_coverage " + " ".join(sys.argv[1:]),
    }
    if args.steps:
        agent_dir, wall_s = train_agent(args, config)
        strip = args.out.with_name(f"{args.out.stem}_filmstrip.png")
        result["agent"] = {"steps": args.steps, "agent_kwargs": args.agent_kwargs, "wall_s": round(wall_s, 1)}
        judged = judge_agent(agent_dir, args.seed, strip, fitted_reward(args, config))
        result["agent"] |= judged  # type: ignore[operator]
    result["machine"] = machine_info()
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
