"""The imitation side of ``benchmarks/peers.py``; run only by the Python of imitation's own virtualenv.

imitation 1.0.1 pins gymnasium 0.29 and stable-baselines3 2.2, so this file imports neither prefrl nor
anything of our venv: ``benchmarks/peers.py`` builds that venv and calls this file as a script.

The task is ``prefrl/Hopper-v0`` rebuilt on gymnasium 0.29's Hopper-v4: no control cost, no termination,
no alive bonus, plus the torso's height above 0.7 m per step, 1,000 steps per episode (see
``envs/mujoco.py``). Under the same MuJoCo build it steps bit for bit as ours (``peers.py`` checks that:
the ``parity`` command).

imitation's side uses the values of its own training script, ``train_preference_comparisons``
(``src/imitation/scripts/config/train_preference_comparisons.py`` at v1.0.1): ``train_defaults``
(fragments of 100 steps, 5 iterations, 10 % initial comparisons, hyperbolic query schedule, 3 reward
epochs per iteration and 200× more on the first, SyntheticGatherer with temperature 1, a BasicRewardNet
with RunningNorm input and output normalisation, no active selection) and its ``seals_hopper`` named config
for PPO (tuned for seals/Hopper-v0, the same kind of fixed-horizon Hopper), with the environment
ingredient's 8 envs. The true-reward baseline is plain SB3 PPO with the same settings on the same envs.

    python benchmarks/peers_imitation.py parity OUT.npz
    python benchmarks/peers_imitation.py train {preferences,true-reward} --steps N --seed S --out DIR
    python benchmarks/peers_imitation.py epochs PAIRS.npz --epochs E --repeats R --seed S --out OUT.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "peers/Hopper-v0"
HORIZON = 1000
FALL_HEIGHT = 0.7  # lower bound of Hopper's healthy_z_range, as in prefrl's HeightReward
N_ENVS = 8  # imitation's environment ingredient: num_vec = 8
ROLLOUT = 2048  # seals_hopper: rl.batch_size (n_steps = 2048 // num_vec)

# imitation v1.0.1, src/imitation/scripts/config/train_preference_comparisons.py, named config seals_hopper
SEALS_HOPPER_PPO: dict[str, Any] = {
    "batch_size": 512,
    "clip_range": 0.1,
    "ent_coef": 0.0010159833764878474,
    "gae_lambda": 0.98,
    "gamma": 0.995,
    "learning_rate": 0.0003904770450788824,
    "max_grad_norm": 0.9,
    "n_epochs": 20,
    "vf_coef": 0.20315938606555833,
}
# ... and train_defaults
PC_DEFAULTS: dict[str, Any] = {
    "fragment_length": 100,
    "num_iterations": 5,
    "initial_comparison_frac": 0.1,
    "transition_oversampling": 1,
    "query_schedule": "hyperbolic",
    "reward_epochs": 3,
}
COLUMNS = ("step", "wall_s", "episodes", "true_return", "learned_return", "labels", "val_accuracy")


class HeightReward(gym.Wrapper):
    """Adds ``z - 0.7`` (torso height above the fall height) to each step's reward; never terminates."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, _, truncated, info = self.env.step(action)
        height = float(self.unwrapped.data.qpos[1]) - FALL_HEIGHT
        return obs, float(reward) + height, False, truncated, info


def make_hopper(**kwargs: Any) -> gym.Env:
    from gymnasium.envs.mujoco.hopper_v4 import HopperEnv

    base = HopperEnv(ctrl_cost_weight=0.0, terminate_when_unhealthy=False, healthy_reward=0.0, **kwargs)
    return HeightReward(base)


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=make_hopper, max_episode_steps=HORIZON)


def parity(out: Path, steps: int = 1000, seed: int = 3) -> None:
    """Steps the task with seeded uniform random actions; writes observations and rewards."""
    register()
    env = gym.make(ENV_ID)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 3))
    obs, _ = env.reset(seed=seed)
    all_obs, rewards = [obs], []
    for action in actions:
        obs, reward, _, _, _ = env.step(action)
        all_obs.append(obs)
        rewards.append(reward)
    np.savez(out, obs=np.array(all_obs), rewards=np.array(rewards))


# --- training -----------------------------------------------------------------------------------------------


def _episode_recorder(venv: Any, path: Path, start: float) -> Any:
    """A VecEnvWrapper under the reward wrapper: logs true episode returns as prefrl's ``metrics.csv`` does.

    Only episodes of agent training count (``training`` is set around ``AgentTrainer.train``), and
    ``step`` is the agent's steps so far: imitation's extra rollouts for fragments are left out, as are
    prefrl's random-policy steps for its initial labels.
    """
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class EpisodeRecorder(VecEnvWrapper):
        def __init__(self) -> None:
            super().__init__(venv)
            self.training = True
            self.agent_steps = self.sampling_steps = 0
            self.labels = math.nan
            path.write_text(",".join(COLUMNS) + "\n")

        def reset(self) -> Any:
            return self.venv.reset()

        def step_wait(self) -> Any:
            obs, rewards, dones, infos = self.venv.step_wait()
            if not self.training:
                self.sampling_steps += self.num_envs
                return obs, rewards, dones, infos
            self.agent_steps += self.num_envs
            returns = [info["episode"]["r"] for info in infos if "episode" in info]
            if returns:
                row = {
                    "step": self.agent_steps,
                    "wall_s": round(time.perf_counter() - start, 2),
                    "episodes": len(returns),
                    "true_return": float(np.mean(returns)),
                    "learned_return": math.nan,
                    "labels": self.labels,
                    "val_accuracy": math.nan,
                }
                with path.open("a", newline="") as f:
                    csv.writer(f).writerow([row[c] for c in COLUMNS])
            return obs, rewards, dones, infos

    return EpisodeRecorder()


def train(arm: str, steps: int, seed: int, labels: int, out: Path) -> None:
    """One arm: imitation's preference comparisons (oracle: SyntheticGatherer) or PPO on the true reward."""
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO
    from torch import nn

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    register()
    rng = np.random.default_rng(seed)
    # parallel=False: on the one core the benchmark gives each arm, subprocesses would only add IPC.
    venv = make_vec_env(ENV_ID, rng=rng, n_envs=N_ENVS, parallel=False)
    recorder = _episode_recorder(venv, out / "metrics.csv", start)
    policy_kwargs = {"activation_fn": nn.ReLU, "net_arch": {"pi": [64, 64], "vf": [64, 64]}}
    agent = PPO(
        "MlpPolicy",
        recorder,
        seed=seed,
        n_steps=ROLLOUT // N_ENVS,
        policy_kwargs=policy_kwargs,
        device="cpu",
        **SEALS_HOPPER_PPO,
    )
    extra: dict[str, Any] = {}
    if arm == "true-reward":
        agent.learn(steps)
    else:
        reward_net = NormalizedRewardNet(
            BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm),
            RunningNorm,
        )

        class RecordingAgentTrainer(pc.AgentTrainer):
            def train(self, steps: int, **kwargs: Any) -> None:
                recorder.training = True
                try:
                    super().train(steps, **kwargs)
                finally:
                    recorder.training = False

        agent_trainer = RecordingAgentTrainer(
            algorithm=agent, reward_fn=reward_net, venv=recorder, exploration_frac=0.0, rng=rng
        )
        recorder.training = False
        preference_model = pc.PreferenceModel(reward_net)
        reward_trainer = pc.BasicRewardTrainer(
            preference_model, pc.CrossEntropyRewardLoss(), rng, epochs=PC_DEFAULTS["reward_epochs"]
        )
        iterations = PC_DEFAULTS["num_iterations"]
        main = pc.PreferenceComparisons(
            agent_trainer,
            reward_net,
            num_iterations=iterations,
            fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng),
            preference_gatherer=pc.SyntheticGatherer(rng=rng),
            reward_trainer=reward_trainer,
            fragment_length=PC_DEFAULTS["fragment_length"],
            transition_oversampling=PC_DEFAULTS["transition_oversampling"],
            initial_comparison_frac=PC_DEFAULTS["initial_comparison_frac"],
            query_schedule=PC_DEFAULTS["query_schedule"],
        )
        original_push = main.dataset.push

        def push(fragments: Any, preferences: np.ndarray) -> None:
            original_push(fragments, preferences)
            recorder.labels = len(main.dataset)

        main.dataset.push = push  # type: ignore[method-assign]
        # PreferenceComparisons.train trains the agent after the initial comparisons and after each of the
        # num_iterations rounds, total_timesteps // num_iterations steps each time: (n + 1) / n of
        # total_timesteps in all. Asking for steps · n / (n + 1) gives its agent the other arms' steps.
        stats = main.train(steps * iterations // (iterations + 1), labels)
        extra = {
            "labels": len(main.dataset),
            "reward_accuracy": float(stats["reward_accuracy"]),
            "sampling_steps": recorder.sampling_steps,
        }
    wall = time.perf_counter() - start
    venv.close()
    result = {"agent_steps": int(agent.num_timesteps), "wall_s": round(wall, 1), **extra}
    (out / "imitation_result.json").write_text(json.dumps(result, indent=2) + "\n")


# --- reward-model epochs ------------------------------------------------------------------------------------


def epochs(pairs_path: Path, num_epochs: int, repeats: int, seed: int, out: Path) -> None:
    """Seconds per epoch of imitation's reward trainers on a fixed preference set.

    ``pairs_path`` holds ``obs (P, 2, L + 1, obs_dim)``, ``acts (P, 2, L, act_dim)``,
    ``rewards (P, 2, L)`` and ``mu (P,)``. Two models: the script's default (one BasicRewardNet,
    BasicRewardTrainer, batch 32) and its ``reward_ensemble`` layout cut to prefrl's 3 members
    (EnsembleTrainer: each member one pass over its own bootstrap sample per epoch).
    """
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.data.types import TrajectoryWithRew
    from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet, RewardEnsemble
    from imitation.util.networks import RunningNorm

    torch.set_num_threads(1)
    register()
    env = gym.make(ENV_ID)
    data = np.load(pairs_path)
    fragments = [
        tuple(
            TrajectoryWithRew(
                obs=data["obs"][i, side],
                acts=data["acts"][i, side],
                infos=None,
                terminal=False,
                rews=data["rewards"][i, side].astype(np.float32),
            )
            for side in (0, 1)
        )
        for i in range(len(data["mu"]))
    ]
    dataset = pc.PreferenceDataset()
    dataset.push(fragments, data["mu"].astype(np.float32))

    def member() -> Any:
        net = BasicRewardNet(env.observation_space, env.action_space, normalize_input_layer=RunningNorm)
        return NormalizedRewardNet(net, RunningNorm)

    def seconds_per_epoch(make_trainer: Any) -> list[float]:
        times = []
        for r in range(seed, seed + repeats):
            trainer = make_trainer(np.random.default_rng(r))
            trainer.train(dataset, epoch_multiplier=1 / num_epochs)  # one warm-up epoch
            begin = time.perf_counter()
            trainer.train(dataset)
            times.append((time.perf_counter() - begin) / num_epochs)
        return times

    loss = pc.CrossEntropyRewardLoss()
    single = seconds_per_epoch(
        lambda rng: pc.BasicRewardTrainer(pc.PreferenceModel(member()), loss, rng, epochs=num_epochs)
    )
    ensemble = seconds_per_epoch(
        lambda rng: pc.EnsembleTrainer(
            pc.PreferenceModel(
                RewardEnsemble(env.observation_space, env.action_space, [member() for _ in range(3)])
            ),
            loss,
            rng,
            epochs=num_epochs,
        )
    )
    pairs = len(dataset)
    result = {
        "default": {
            "model": "BasicRewardNet (32, 32), batch 32",
            "seconds": single,
            "pairs_per_epoch": pairs,
        },
        "ensemble_3": {
            "model": "RewardEnsemble of 3 BasicRewardNets, EnsembleTrainer, batch 32",
            "seconds": ensemble,
            "pairs_per_epoch": 3 * pairs,
        },
        "threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parity")
    p.add_argument("out", type=Path)
    t = sub.add_parser("train")
    t.add_argument("arm", choices=["preferences", "true-reward"])
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--labels", type=int, default=700)
    t.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("epochs")
    e.add_argument("pairs", type=Path)
    e.add_argument("--epochs", type=int, default=5)
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "parity":
        parity(args.out)
    elif args.command == "train":
        train(args.arm, args.steps, args.seed, args.labels, args.out)
    else:
        epochs(args.pairs, args.epochs, args.repeats, args.seed, args.out)


if __name__ == "__main__":
    main()
