"""Cost of the learned reward: PPO steps/s on Hopper, bare vs wrapped (ensemble of 3 + segment cutting).

The agents live in one process and train in alternating blocks, so load on the machine hits them alike.
The wrapped env scores every step with a fitted 3-member ensemble (the per-step path the trainer uses) and
cuts segments for queries.

* ``wrapped`` vs ``bare`` (the headline ratio): the wrapped env does all that work, but its agent is handed
  the true reward back, so with the same seeds both agents follow the very same trajectories and the
  simulator costs the same in both: the ratio is the wrapper's cost alone.
* ``learning_on_learned_reward``: a third agent that learns from the learned reward, as in training. Its
  behaviour drifts from the bare agent's, and the simulator's cost with it (contacts cost more than
  flight), so its ratio mixes the wrapper's cost with that of a different gait.

    python benchmarks/overhead.py [--env prefrl/Hopper-v0] [--block-steps 20480] [--rounds 5]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize  # noqa: E402
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn  # noqa: E402

from benchmarks.common import RESULTS, machine_info, write_json  # noqa: E402
from prefrl.environment import make_vec_env, random_actions  # noqa: E402
from prefrl.preference_dataset import PreferenceDataset  # noqa: E402
from prefrl.reward_model import RewardEnsemble  # noqa: E402
from prefrl.spec import DEFAULTS  # noqa: E402
from prefrl.teachers import SyntheticTeacher  # noqa: E402
from prefrl.wrappers import LearnedRewardVecEnv  # noqa: E402


@dataclass
class Args:
    env: str = "prefrl/Hopper-v0"
    n_envs: int = 2
    block_steps: int = 20_480
    rounds: int = 5
    out: Path = RESULTS / "overhead.json"


def fitted_ensemble(env: LearnedRewardVecEnv, rng: np.random.Generator) -> RewardEnsemble:
    """A 3-member ensemble fitted to oracle labels on random-policy segments, as after pre-training."""
    env.reset()
    while len(env.pool) < 400:
        env.step(random_actions(env, rng))
    data, teacher = PreferenceDataset(), SyntheticTeacher(rng=rng)
    pairs = env.pool.sample_pairs(200, rng)
    answers = teacher.answer(
        np.stack([a.true_rewards for a, _ in pairs]), np.stack([b.true_rewards for _, b in pairs])
    )
    for (a, b), answer in zip(pairs, answers):
        data.add(a, b, {0: 1.0, 1: 0.0, 2: 0.5}[int(answer)])
    ensemble = RewardEnsemble.for_spaces(env.observation_space, env.action_space, ensemble_size=3)
    ensemble.fit(data, epochs=5, rng=rng)
    ensemble.normalize(*env.pool.observations(10_000, rng))
    return ensemble


def env_only_rates(bare: VecEnv, wrapped: VecEnv, steps: int, rounds: int) -> dict[str, list[float]]:
    """Vectorised steps/s with random actions and no learning, alternating: the wrapper's own cost."""
    rng = np.random.default_rng(1)
    actions = [random_actions(bare, rng) for _ in range(steps)]
    rates: dict[str, list[float]] = {"bare": [], "wrapped": []}
    for _ in range(rounds):
        for name, venv in (("bare", bare), ("wrapped", wrapped)):
            venv.reset()
            start = time.perf_counter()
            for action in actions:
                venv.step(action)
            rates[name].append(steps * venv.num_envs / (time.perf_counter() - start))
    return rates


class TrueRewardForAgent(VecEnvWrapper):
    """Hands the agent ``info["true_reward"]`` instead of the learned reward the inner wrapper computed."""

    def reset(self) -> np.ndarray:
        return self.venv.reset()  # type: ignore[return-value]

    def step_wait(self) -> VecEnvStepReturn:
        obs, _, dones, infos = self.venv.step_wait()
        rewards = np.array([info["true_reward"] for info in infos], dtype=np.float32)
        return obs, rewards, dones, infos


def make_agent(venv: VecEnv, seed: int) -> PPO:
    return PPO(
        "MlpPolicy", VecNormalize(venv), seed=seed, verbose=0, **DEFAULTS["mujoco"].agents["ppo"].hyperparams
    )


def main(args: Args) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    probe = LearnedRewardVecEnv(make_vec_env(args.env, args.n_envs, 10), None, segment_length=60)
    ensemble = fitted_ensemble(probe, rng)
    torch.manual_seed(0)
    np.random.seed(0)

    def learned_reward_env() -> LearnedRewardVecEnv:
        return LearnedRewardVecEnv(make_vec_env(args.env, args.n_envs, 0), ensemble, segment_length=60)

    agents = {
        "bare": make_agent(make_vec_env(args.env, args.n_envs, 0), 0),
        "wrapped": make_agent(TrueRewardForAgent(learned_reward_env()), 0),
        "learning_on_learned_reward": make_agent(learned_reward_env(), 0),
    }
    # SB3 samples actions and shuffles minibatches with the global torch/numpy RNGs: each agent gets its own
    # copy of them, swapped in around its blocks, so that alternating does not change what any agent does.
    rng_states = {name: (torch.get_rng_state(), np.random.get_state()) for name in agents}

    def learn(name: str, steps: int) -> float:
        torch.set_rng_state(rng_states[name][0])
        np.random.set_state(rng_states[name][1])
        start = time.perf_counter()
        agents[name].learn(steps, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        rng_states[name] = (torch.get_rng_state(), np.random.get_state())
        return elapsed

    for name, agent in agents.items():  # warm-up: first rollout, allocations
        learn(name, agent.n_steps * args.n_envs)
    rates: dict[str, list[float]] = {name: [] for name in agents}
    for _ in range(args.rounds):
        for name in agents:
            rates[name].append(args.block_steps / learn(name, args.block_steps))
            print(f"{name}: {rates[name][-1]:.0f} steps/s", flush=True)
    # The check behind the headline ratio: the bare and wrapped agents saw the very same observations.
    same_trajectories = bool(
        np.array_equal(agents["bare"].env.obs_rms.mean, agents["wrapped"].env.obs_rms.mean)  # type: ignore[union-attr]
    )
    env_rates = env_only_rates(
        make_vec_env(args.env, args.n_envs, 2),
        LearnedRewardVecEnv(make_vec_env(args.env, args.n_envs, 3), ensemble, segment_length=60),
        steps=2_000,
        rounds=args.rounds,
    )
    env_bare, env_wrapped = float(np.median(env_rates["bare"])), float(np.median(env_rates["wrapped"]))
    bare, wrapped = float(np.median(rates["bare"])), float(np.median(rates["wrapped"]))
    learning = float(np.median(rates["learning_on_learned_reward"]))
    ratio = [w / b for w, b in zip(rates["wrapped"], rates["bare"])]
    result = {
        "benchmark": "overhead",
        "env": args.env,
        "algo": "ppo",
        "n_envs": args.n_envs,
        "ensemble_size": 3,
        "segment_length": 60,
        "block_steps": args.block_steps,
        "rounds": args.rounds,
        "bare_steps_per_s": round(bare, 1),
        "wrapped_steps_per_s": round(wrapped, 1),
        "ratio": round(wrapped / bare, 3),
        "ratio_per_round": [round(r, 3) for r in ratio],
        "same_trajectories": same_trajectories,
        "target_ratio": 0.95,
        "rates": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "note": (
            "median steps/s over alternating blocks of PPO learning, one process, torch threads = 1; "
            "'wrapped' computes the learned reward and cuts segments every step but its agent gets the true "
            "reward back, so it follows the bare agent's trajectories exactly"
        ),
        "learning_on_learned_reward": {
            "steps_per_s": round(learning, 1),
            "ratio_to_bare": round(learning / bare, 3),
            "note": "an agent learning from the learned reward: its gait, and so the simulator's cost, drift",
        },
        "env_only": {
            "bare_steps_per_s": round(env_bare, 1),
            "wrapped_steps_per_s": round(env_wrapped, 1),
            "ratio": round(env_wrapped / env_bare, 3),
            "note": "random actions, no learning: the wrapper's per-step cost against the simulator alone",
        },
        "machine": machine_info(),
    }
    write_json(args.out, result)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in rates.items():
        ax.plot(range(1, len(values) + 1), values, "o-", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("env steps / s (PPO learning)")
    ax.set_title(f"{args.env}: learned-reward wrapper overhead, ratio {wrapped / bare:.3f}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main(tyro.cli(Args))
