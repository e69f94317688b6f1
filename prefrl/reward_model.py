"""The learned reward: an ensemble of predictors fitted to preferences (Christiano et al. 2017, §2.2.3).

Each member r̂ₖ maps one step (observation, action) to a scalar. A pair of segments is scored by
Bradley-Terry on the summed, undiscounted predicted reward, mixed with a 10 % chance that the answer
was uniformly random:

    P̂[σ¹ ≻ σ²] = 0.9 · exp Σr̂(σ¹) / (exp Σr̂(σ¹) + exp Σr̂(σ²)) + 0.05

and fitted by cross-entropy against the label μ. Each member is fitted on its own bootstrap resample
of the labels, with its own 1/e validation hold-out and an adaptive L2 coefficient that keeps the
validation loss between 1.1× and 1.5× the training loss (App. A; Ibarz et al. 2018). Each member's
output is normalised independently (zero mean, std ``output_std``) and the members are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from prefrl.preference_dataset import VALIDATION_SHARE, PreferenceDataset

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(obs ``(N, *obs_shape)``, acts ``(N, *act_shape)``) -> rewards ``(N,)``: what the wrappers need."""

RANDOM_ANSWER_PROB = 0.1  # App. A: "a 10 % chance that the human responds uniformly at random"
INPUT_CLIP = 10.0
"""Standardised inputs of an MLP member are clipped to ±this many standard deviations of the data its fit
started on (SB3's ``VecNormalize`` clips observations at the same 10): a feature that the labelled steps
barely vary (e.g. a rail's constraint force, zero until the agent pushes the cart into it) cannot blow the
reward up when it moves."""


def action_features(space: gym.Space, acts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Actions as float features ``(N, act_dim)``: Box flattened, Discrete one-hot."""
    t = torch.as_tensor(acts)
    if isinstance(space, gym.spaces.Discrete):
        return nn.functional.one_hot(t.long().reshape(-1), int(space.n)).float()
    return t.float().reshape(t.shape[0], -1)


class FusedEnsemble(Protocol):
    """A whole ensemble's eval-mode forward as one computation, for the per-step reward: the same numbers
    as :meth:`RewardEnsemble.member_rewards` (normalised), with less per-call overhead. Built from the
    ensemble's state when first asked for, and dropped whenever that state changes."""

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The members' mean normalised reward, ``(N,)``."""
        ...

    def members(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Each member's normalised reward, ``(N, K)``."""
        ...


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky-relu": lambda: nn.LeakyReLU(0.01),  # App. A.1
    "tanh": nn.Tanh,
}
"""The hidden units an :class:`MLPReward` may have, by the name ``--reward-activation`` gives them."""


class MLPReward(nn.Module):
    """r̂(o, a) for vector observations: 2 hidden layers of 64, leaky ReLU 0.01 (App. A.1), or tanh units.

    Inputs are standardised with statistics set by :meth:`set_input_stats` before each fit and clipped to
    ±:data:`INPUT_CLIP`; a feature constant in those statistics is ignored (its standard deviation is
    infinite), since the fit cannot have learnt what it is worth. With ``use_actions=False`` the member is
    r̂(o): it takes actions like any member and ignores them.
    """

    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.0,
        use_actions: bool = True,
        activation: str = "leaky-relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        act_dim = act_dim if use_actions else 0
        self.act_dim = act_dim
        self.activation = activation
        dims = (obs_dim + act_dim, *hidden)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("in_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("in_std", torch.ones(obs_dim + act_dim))

    def set_input_stats(self, features: torch.Tensor) -> None:
        """``features``: observations then action features, as :meth:`forward` concatenates them."""
        features = features[:, : self.in_mean.numel()]  # (observations come first)
        std = features.std(0)
        self.in_mean.copy_(features.mean(0))
        self.in_std.copy_(torch.where(std > 1e-6, std, torch.full_like(std, math.inf)))

    @staticmethod
    def fused(ensemble: RewardEnsemble) -> FusedEnsemble | None:
        """An ensemble of these members as one numpy network, for per-step inference."""
        return _NumpyMLPEnsemble.build(ensemble)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs.float().reshape(obs.shape[0], -1), acts[:, : self.act_dim]], dim=1)
        return self.net(((x - self.in_mean) / self.in_std).clamp(-INPUT_CLIP, INPUT_CLIP)).squeeze(-1)


@dataclass
class FitStats:
    """What one call of :meth:`RewardEnsemble.fit` achieved, averaged over members."""

    train_loss: float
    val_loss: float
    val_accuracy: float  # on held-out non-"equal" pairs; nan when none are held out
    l2_coef: float
    num_pairs: int
    epochs: int
    # Accuracy on the non-"equal" pairs that came since the previous fit, scored before this fit trains on
    # them: what the reward model made of answers it had never seen, held out or not (a prequential
    # measure, so a run that holds nothing out, as B-Pref trains, still says how well its reward predicts
    # the person). nan at the first fit, when no pair is new, and for a fit resumed midway.
    fresh_accuracy: float = math.nan
    fresh_pairs: int = 0  # the non-"equal" new pairs it was scored on


@dataclass
class FitProgress:
    """Where a fit stands, so that a long one (hours for Atari's 200 pre-training epochs) can stop and go on.

    Each member's bootstrap sample is drawn once, at the start of the fit (its validation pairs are fixed
    per pair across fits), and the epochs it has finished are counted; :meth:`RewardEnsemble.fit` given this
    object goes on from there. Indices refer to the preference dataset's first ``num_pairs`` pairs.
    """

    epochs: int
    num_pairs: int
    val_idx: list[np.ndarray]
    train_idx: list[np.ndarray]
    epochs_done: list[int]
    stats: list[tuple[float, float, float, float] | None]

    @classmethod
    def start(
        cls,
        held_out: np.ndarray,
        epochs: int,
        rng: np.random.Generator,
        sample_size: int | None = None,
    ) -> FitProgress:
        """Splits for one fit: per member, the pairs ``held_out`` marks for it are its validation set, and
        it trains on a bootstrap sample of the others.

        Args:
            held_out: bool ``(num_pairs, num_members)``, fixed per pair across fits
                (:meth:`~prefrl.preference_dataset.PreferenceDataset.held_out`, a share of 1/e, App. A).
                With fewer than 8 pairs nothing is held out.
            sample_size: pairs in each bootstrap sample (default: as many as the member's training pairs).
                It also caps the held-out pairs that are scored, so that validation, like training, costs
                the same however many labels are kept; all held-out pairs are still kept out of training.
        """
        num_pairs, num_members = held_out.shape
        val_idx, train_idx = [], []
        for k in range(num_members):
            val = np.flatnonzero(held_out[:, k])
            rest = np.flatnonzero(~held_out[:, k])
            if num_pairs < 8 or not len(rest):
                val, rest = val[:0], np.arange(num_pairs)
            if sample_size is not None and len(val) > sample_size:
                val = rng.choice(val, size=sample_size, replace=False)
            size = len(rest) if sample_size is None else sample_size
            val_idx.append(val)
            train_idx.append(rng.choice(rest, size=size, replace=True))
        return cls(epochs, num_pairs, val_idx, train_idx, [0] * num_members, [None] * num_members)

    @property
    def finished(self) -> bool:
        return all(done >= self.epochs for done in self.epochs_done)


class RewardEnsemble(nn.Module):
    """``ensemble_size`` reward predictors with independent normalisation (App. A: 3 members).

    Args:
        members: the predictors (e.g. :class:`MLPReward`); each maps a flat batch of steps to ``(N,)``.
        action_space: used to turn actions into features.
        output_std: std of each normalised member (1 for MuJoCo, 0.05 for Atari, App. A).
        lr: Adam learning rate.
        l2_coef: initial L2 coefficient (Ibarz et al. 2018 start at 1e-4, adapted multiplicatively).
        validation_share: share of the labelled pairs each member holds out for validation (1/e, App. A).
            0 holds none out, as B-Pref trains its members (Lee et al. 2021): every member then draws its
            bootstrap sample from all pairs, and the L2 coefficient, having no validation loss to follow,
            stays as set.
        batch_size: pairs per gradient step.
        device: torch device for fitting; inference on the MLP fast path always runs in numpy.
    """

    out_mean: torch.Tensor
    out_scale: torch.Tensor

    def __init__(
        self,
        members: list[nn.Module],
        action_space: gym.Space,
        *,
        output_std: float = 1.0,
        lr: float = 3e-4,
        l2_coef: float = 1e-4,
        validation_share: float = VALIDATION_SHARE,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not 0 <= validation_share < 1:
            raise ValueError(f"the validation share must be in [0, 1); got {validation_share}")
        self.validation_share = validation_share
        self.members = nn.ModuleList(members)
        self.action_space = action_space
        self.output_std = output_std
        self.batch_size = batch_size
        k = len(members)
        self.register_buffer("out_mean", torch.zeros(k))
        self.register_buffer("out_scale", torch.ones(k))
        self.device = torch.device(device)
        self.to(self.device)  # after every buffer is registered: the normalisation goes along too
        self.l2_coefs = [l2_coef] * k
        self.optimizers = [torch.optim.Adam(m.parameters(), lr=lr) for m in self.members]
        # The whole ensemble fused for per-step inference (MLPs: numpy; CNNs: one grouped network); rebuilt
        # lazily after every change. Members of one class that knows how to fuse them may take this path.
        self._fast: FusedEnsemble | None = None
        self._fast_possible = len({type(m) for m in members}) == 1 and hasattr(type(members[0]), "fused")
        self.num_fits = 0
        # Content keys (PreferenceDataset.keys) of the pairs the last fit saw; None when unknown (a state
        # saved before they were kept): the next fit then scores no pair as fresh.
        self.fitted_keys: np.ndarray | None = np.zeros(0, dtype=np.uint64)

    @classmethod
    def for_spaces(
        cls,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        ensemble_size: int = 3,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.0,
        use_actions: bool = True,
        activation: str = "leaky-relu",
        **kwargs: float | int | str,
    ) -> RewardEnsemble:
        """An ensemble of MLPs sized for vector observations (App. A.1): r̂(o, a), or r̂(o) without
        ``use_actions``; ``activation`` names their hidden units (:data:`ACTIVATIONS`)."""
        obs_dim = int(np.prod(observation_space.shape or ()))
        act_dim = action_features(action_space, action_space.sample()[None]).shape[1]
        members = [
            MLPReward(
                obs_dim,
                act_dim,
                hidden=hidden,
                dropout=dropout,
                use_actions=use_actions,
                activation=activation,
            )
            for _ in range(ensemble_size)
        ]
        return cls(members, action_space, **kwargs)  # type: ignore[arg-type]

    @property
    def ensemble_size(self) -> int:
        return len(self.members)

    # ----------------------------------------------------------------------------------- inference
    def _member_outputs(self, obs: np.ndarray, acts: np.ndarray) -> torch.Tensor:
        """Raw member outputs ``(K, N)`` for a flat batch of steps (eval mode, no grad)."""
        o = torch.as_tensor(obs, device=self.device)
        a = action_features(self.action_space, acts).to(self.device)
        return torch.stack([m(o, a) for m in self.members])

    @torch.no_grad()
    def member_rewards(self, obs: np.ndarray, acts: np.ndarray, *, normalized: bool = True) -> np.ndarray:
        """Per-member rewards ``(K, N)`` for steps ``obs (N, *obs_shape)``, ``acts (N, *act_shape)``."""
        self.eval()
        out = self._member_outputs(obs, acts)
        if normalized:
            out = (out - self.out_mean[:, None]) * self.out_scale[:, None]
        return out.cpu().numpy()

    def reward(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The learned reward ``(N,)``: the mean of the normalised members. This is a :data:`RewardFn`."""
        fast = self._fast_path()
        if fast is not None:
            return fast(obs, acts)
        return self.member_rewards(obs, acts).mean(0)

    __call__ = reward  # type: ignore[assignment]

    def reward_and_spread(self, obs: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The learned reward ``(N,)`` and the members' spread about it ``(N,)``: the std of their normalised
        rewards, the ensemble's uncertainty that RUNE pays the agent for (:class:`UncertaintyBonus`)."""
        fast = self._fast_path()
        if fast is not None:
            members = fast.members(obs, acts)
        else:
            members = self.member_rewards(obs, acts).T
        return members.mean(1), members.std(1)

    def _fast_path(self) -> FusedEnsemble | None:
        if self._fast is None and self._fast_possible:
            self._fast = type(self.members[0]).fused(self)  # type: ignore[attr-defined]
        return self._fast

    @torch.no_grad()
    def segment_returns(self, obs: np.ndarray, acts: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Raw predicted returns ``(K, B)`` of segments: obs ``(B, length, ...)``, acts likewise."""
        self.eval()
        batch, length = obs.shape[:2]
        out = []
        for start in range(0, batch, chunk):  # chunks bound memory for pixel segments
            o = obs[start : start + chunk].reshape(-1, *obs.shape[2:])
            a = acts[start : start + chunk].reshape(-1, *acts.shape[2:])
            out.append(self._member_outputs(o, a).reshape(self.ensemble_size, -1, length).sum(-1))
        return torch.cat(out, dim=1).cpu().numpy()

    def preference_probs(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """P̂[left ≻ right] per member ``(K, B)`` for pairs ``obs (B, 2, length, ...)`` (no noise model)."""
        batch = obs.shape[0]
        returns = self.segment_returns(
            obs.reshape(2 * batch, *obs.shape[2:]), acts.reshape(2 * batch, *acts.shape[2:])
        )
        returns = returns.reshape(self.ensemble_size, batch, 2)
        return 1.0 / (1.0 + np.exp(np.clip(returns[..., 1] - returns[..., 0], -50, 50)))

    # ------------------------------------------------------------------------------------- fitting
    def _pair_loss(
        self, member: nn.Module, obs: np.ndarray, acts: np.ndarray, mu: np.ndarray
    ) -> torch.Tensor:
        """Per-pair cross-entropy ``(B,)`` of the noisy Bradley-Terry model, batched over pairs and steps."""
        batch, _, length = obs.shape[:3]
        o = torch.as_tensor(obs.reshape(-1, *obs.shape[3:]), device=self.device)
        a = action_features(self.action_space, acts.reshape(-1, *acts.shape[3:])).to(self.device)
        returns = member(o, a).reshape(batch, 2, length).sum(-1)
        p_left = (1 - RANDOM_ANSWER_PROB) * torch.sigmoid(
            returns[:, 0] - returns[:, 1]
        ) + RANDOM_ANSWER_PROB / 2
        target = torch.as_tensor(mu, device=self.device)
        return -(target * torch.log(p_left) + (1 - target) * torch.log1p(-p_left))

    def _l2(self, member: nn.Module) -> torch.Tensor:
        return sum((p**2).sum() for name, p in member.named_parameters() if name.endswith("weight"))  # type: ignore[return-value]

    @torch.no_grad()
    def _evaluate(self, member: nn.Module, data: PreferenceDataset, idx: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy on non-equal pairs) of one member on pairs ``idx``."""
        member.eval()
        losses, correct, counted = [], 0, 0
        for start in range(0, len(idx), 4 * self.batch_size):
            obs, acts, mu = data.batch(idx[start : start + 4 * self.batch_size])
            loss = self._pair_loss(member, obs, acts, mu)
            losses.append(loss.cpu().numpy())
            # The loss is minimised at p̂ = μ: a pair is "right" when p̂ - 0.5 has μ - 0.5's sign.
            decided = mu != 0.5
            p_left = np.exp(-loss.cpu().numpy())  # p̂ of the labelled outcome
            correct += int((p_left[decided] > 0.5).sum())
            counted += int(decided.sum())
        return float(np.concatenate(losses).mean()), (correct / counted if counted else math.nan)

    def fit(
        self,
        data: PreferenceDataset,
        *,
        epochs: int,
        rng: np.random.Generator,
        progress: FitProgress | None = None,
        on_epoch: Callable[[FitProgress], None] | None = None,
        sample_size: int | None = None,
    ) -> FitStats:
        """Fit every member for ``epochs`` passes over its bootstrap resample of ``data``.

        Each member holds out ``validation_share`` of the pairs for validation (1/e, App. A), the same
        pairs at every fit (:meth:`~prefrl.preference_dataset.PreferenceDataset.held_out`), draws its
        training set from the rest with replacement, and after every epoch multiplies its L2 coefficient
        by 1.1 when validation loss exceeds 1.5× training loss and divides it by 1.1 when it falls below
        1.1× (with nothing held out, the coefficient stays as set).

        Args:
            progress: an interrupted fit's :class:`FitProgress` to go on with (its splits and epoch counts;
                ``epochs`` is then taken from it), or None to start afresh.
            on_epoch: called with the progress after every epoch of every member (e.g. to save it).
            sample_size: pairs in each member's bootstrap sample, so an epoch's cost does not grow with the
                dataset (default: as many as the member's training pairs, the usual bootstrap).
        """
        n = len(data)
        if n == 0:
            raise ValueError("cannot fit the reward model on an empty preference dataset")
        fresh_accuracy, fresh_pairs = math.nan, 0
        if progress is None:
            fresh_accuracy, fresh_pairs = self._score_fresh(data)
            held_out = data.held_out(len(self.members), share=self.validation_share)
            progress = FitProgress.start(held_out, epochs, rng, sample_size)
        elif progress.num_pairs > n or len(progress.epochs_done) != len(self.members):
            raise ValueError(
                f"the fit progress is for {progress.num_pairs} pairs and {len(progress.epochs_done)} "
                f"members; this is {n} pairs and {len(self.members)} members"
            )
        fresh = not any(progress.epochs_done)  # input statistics are set once, when a fit starts
        if fresh and any(hasattr(m, "set_input_stats") for m in self.members):  # CNN members need none
            obs_sample, act_sample = data.all_steps(20_000, rng)
            features = torch.cat(
                [
                    torch.as_tensor(obs_sample, dtype=torch.float32).reshape(len(obs_sample), -1),
                    action_features(self.action_space, act_sample),
                ],
                dim=1,
            ).to(self.device)
            for member in self.members:
                if hasattr(member, "set_input_stats"):
                    member.set_input_stats(features)  # type: ignore[operator]
        for k, member in enumerate(self.members):
            val_idx, train_idx = progress.val_idx[k], progress.train_idx[k]
            train_loss = val_loss = math.nan
            while progress.epochs_done[k] < progress.epochs:
                member.train()
                epoch_losses = []
                for start in range(0, len(train_idx), self.batch_size):
                    obs, acts, mu = data.batch(train_idx[start : start + self.batch_size])
                    loss = self._pair_loss(member, obs, acts, mu).mean()
                    self.optimizers[k].zero_grad()
                    (loss + self.l2_coefs[k] * self._l2(member)).backward()
                    self.optimizers[k].step()
                    epoch_losses.append(loss.item())
                rng.shuffle(train_idx)
                train_loss = float(np.mean(epoch_losses))
                val_acc = math.nan
                if len(val_idx):
                    val_loss, val_acc = self._evaluate(member, data, val_idx)
                    if val_loss > 1.5 * train_loss:
                        self.l2_coefs[k] *= 1.1
                    elif val_loss < 1.1 * train_loss:
                        self.l2_coefs[k] /= 1.1
                progress.epochs_done[k] += 1
                if progress.epochs_done[k] == progress.epochs:
                    progress.stats[k] = (train_loss, val_loss, val_acc, self.l2_coefs[k])
                if on_epoch is not None:
                    self.eval()
                    on_epoch(progress)
        self.eval()
        self.num_fits += 1
        self.fitted_keys = data.keys.copy()
        self._fast = None
        stats = [s if s is not None else (math.nan,) * 4 for s in progress.stats]
        columns = np.array(stats, dtype=np.float64).T
        train_loss, val_loss, val_acc, l2 = (
            float(np.nanmean(c)) if np.isfinite(c).any() else math.nan for c in columns
        )
        return FitStats(train_loss, val_loss, val_acc, l2, n, progress.epochs, fresh_accuracy, fresh_pairs)

    def _score_fresh(self, data: PreferenceDataset) -> tuple[float, int]:
        """Accuracy (mean over members) on the non-"equal" pairs of ``data`` that no fit has seen, and how
        many there are; nan before the first fit, when the fitted pairs are unknown, or when none is new."""
        if not self.num_fits or self.fitted_keys is None:
            return math.nan, 0
        fresh = np.flatnonzero(~np.isin(data.keys, self.fitted_keys))
        decided = int((data.mu[fresh] != 0.5).sum())
        if not decided:
            return math.nan, 0
        accuracies = [self._evaluate(member, data, fresh)[1] for member in self.members]
        return float(np.mean(accuracies)), decided

    @torch.no_grad()
    def normalize(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """Set each member's output to zero mean and std ``output_std`` on these steps (App. A)."""
        out = self.member_rewards(obs, acts, normalized=False)
        self.out_mean.copy_(torch.as_tensor(out.mean(1)))
        self.out_scale.copy_(torch.as_tensor(self.output_std / np.maximum(out.std(1), 1e-8)))
        self._fast = None

    # --------------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, object]:
        """Weights, normalisation, optimiser state and L2 coefficients (what :meth:`save` writes)."""
        return {
            "model": self.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "l2_coefs": list(self.l2_coefs),
            "num_fits": self.num_fits,
            # as a tensor (the keys' bits as int64), so that reward_model.pt loads with weights_only=True
            "fitted_keys": None
            if self.fitted_keys is None
            else torch.from_numpy(self.fitted_keys.view(np.int64).copy()),
        }

    def restore(self, state: dict[str, object]) -> None:
        """Take back a :meth:`state`."""
        self.load_state_dict(state["model"])  # type: ignore[arg-type]
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):  # type: ignore[call-overload]
            opt.load_state_dict(opt_state)
        self.l2_coefs = list(state["l2_coefs"])  # type: ignore[call-overload]
        self.num_fits = int(state["num_fits"])  # type: ignore[call-overload]
        keys = state.get("fitted_keys")  # absent from states saved before it was kept
        if isinstance(keys, torch.Tensor):
            keys = keys.cpu().numpy()
        self.fitted_keys = None if keys is None else np.asarray(keys).astype(np.int64).view(np.uint64).copy()
        self.eval()
        self._fast = None

    def to_device(self, device: str | torch.device) -> RewardEnsemble:
        """Move the weights, the normalisation and the optimisers' moments to ``device``; returns self."""
        self.device = torch.device(device)
        self.to(self.device)
        for optimizer in self.optimizers:
            for moments in optimizer.state.values():
                for key, value in moments.items():
                    # Adam keeps its step count on the CPU
                    if key != "step" and isinstance(value, torch.Tensor):
                        moments[key] = value.to(self.device)
        self._fast = None
        return self

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), path)

    def load(self, path: str | Path) -> None:
        """Load weights, normalisation, optimiser state and L2 coefficients saved by :meth:`save`."""
        self.restore(torch.load(path, map_location=self.device, weights_only=False))


class UncertaintyBonus:
    """RUNE's reward (Liang et al. 2022): the ensemble's reward plus ``beta_t`` times its members' spread,
    ``beta_t = beta * (1 - decay) ** step``; a :data:`RewardFn`. The agent is paid for going where the
    members disagree, which is where the next queries (chosen by disagreement) can teach the most; the pay
    fades as the run goes on. The trainer moves :attr:`step` along between rollouts."""

    def __init__(self, ensemble: RewardEnsemble, beta: float, decay: float) -> None:
        self.ensemble, self.beta, self.decay = ensemble, beta, decay
        self.step = 0

    @property
    def beta_now(self) -> float:
        return self.beta * (1.0 - self.decay) ** self.step

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        reward, spread = self.ensemble.reward_and_spread(obs, acts)
        return reward + self.beta_now * spread


class _NumpyMLPEnsemble:
    """The whole MLP ensemble as stacked numpy weights, with input standardisation, output
    normalisation and the member average folded into the first and last layers (the inputs clipped
    beforehand to ±:data:`INPUT_CLIP` standard deviations, in their own units).

    The env wrapper calls the reward once per vectorised step on a handful of rows; at that size
    numpy's batched matmul is several times cheaper than torch's per-op dispatch.
    """

    def __init__(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        bounds: tuple[np.ndarray, np.ndarray],
        action_space: gym.Space,
        act_dim: int,
        activation: str = "leaky-relu",
    ) -> None:
        # Members side by side: the first layer's (in, out) blocks are concatenated into one matrix and the
        # last layer's outputs summed in one (K·hidden, 1) product; hidden layers stay per member (a block
        # diagonal would triple their memory, and cache misses cost more than the extra calls).
        self.num_members = weights[0].shape[0]
        self.first_w = np.concatenate(list(weights[0]), axis=1).astype(np.float32)
        self.first_b = np.concatenate(list(biases[0][:, 0])).astype(np.float32)
        self.hidden = [
            ([wk.astype(np.float32) for wk in w], np.concatenate(list(b[:, 0])).astype(np.float32))
            for w, b in zip(weights[1:-1], biases[1:-1])
        ]
        self.last_w = np.concatenate(list(weights[-1]), axis=0).astype(np.float32)  # sums over members
        self.last_b = np.float32(biases[-1][:, 0].sum())
        # The members one by one, for their spread: a block (K·hidden, K) product, the 1/K undone.
        k, width = weights[-1].shape[:2]
        self.member_w = np.zeros((k * width, k), np.float32)
        for m in range(k):
            self.member_w[m * width : (m + 1) * width, m] = weights[-1][m][:, 0] * k
        self.member_b = (biases[-1][:, 0, 0] * k).astype(np.float32)
        self.low, self.high = (b.astype(np.float32) for b in bounds)
        self.action_space = action_space
        self.act_dim = act_dim
        self.activation = activation

    @classmethod
    def build(cls, ensemble: RewardEnsemble) -> _NumpyMLPEnsemble | None:
        members = [m for m in ensemble.members if isinstance(m, MLPReward)]
        if len(members) != len(ensemble.members) or len({m.activation for m in members}) != 1:
            return None
        linears = [[layer for layer in m.net if isinstance(layer, nn.Linear)] for m in members]
        weights, biases = [], []
        for depth in range(len(linears[0])):
            w = np.stack([ls[depth].weight.detach().cpu().numpy().T for ls in linears]).astype(np.float64)
            b = np.stack([ls[depth].bias.detach().cpu().numpy() for ls in linears]).astype(np.float64)
            weights.append(w)  # (K, in, out)
            biases.append(b[:, None, :])  # (K, 1, out)
        # Fold (x - mean) / std into the first layer. The members' fits start from the same statistics,
        # so one clip of the raw inputs serves them all; members that differ keep torch's path.
        mean = np.stack([m.in_mean.cpu().numpy() for m in members]).astype(np.float64)  # (K, in)
        std = np.stack([m.in_std.cpu().numpy() for m in members]).astype(np.float64)
        if not all(np.array_equal(m, mean[0]) and np.array_equal(s, std[0]) for m, s in zip(mean, std)):
            return None
        bounds = (mean[0] - INPUT_CLIP * std[0], mean[0] + INPUT_CLIP * std[0])
        biases[0] = biases[0] - np.einsum("ki,kio->ko", mean / std, weights[0])[:, None, :]
        weights[0] = weights[0] / std[:, :, None]
        # Fold (r - out_mean) * out_scale / K into the last layer.
        scale = (ensemble.out_scale.cpu().numpy() / ensemble.ensemble_size).astype(np.float64)
        out_mean = ensemble.out_mean.cpu().numpy().astype(np.float64)
        weights[-1] = weights[-1] * scale[:, None, None]
        biases[-1] = (biases[-1] - out_mean[:, None, None]) * scale[:, None, None]
        return cls(weights, biases, bounds, ensemble.action_space, members[0].act_dim, members[0].activation)

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        out = self._last_hidden(obs, acts).dot(self.last_w)[:, 0]
        out += self.last_b
        return out

    def members(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Each member's normalised reward, ``(N, K)``."""
        out = self._last_hidden(obs, acts).dot(self.member_w)
        out += self.member_b
        return out

    def _last_hidden(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        if isinstance(self.action_space, gym.spaces.Discrete):
            acts = np.eye(int(self.action_space.n))[np.asarray(acts, dtype=np.int64).reshape(-1)]
        acts = acts.reshape(len(acts), -1)[:, : self.act_dim]
        h = np.concatenate([obs.reshape(len(obs), -1), acts], axis=1, dtype=np.float32)
        np.clip(h, self.low, self.high, out=h)
        # ndarray.dot: the least per-call overhead for these tiny matrices.
        h = h.dot(self.first_w)
        h += self.first_b
        self._activate(h)
        for ws, b in self.hidden:
            width = ws[0].shape[0]
            h = np.concatenate([h[:, k * width : (k + 1) * width].dot(w) for k, w in enumerate(ws)], axis=1)
            h += b
            self._activate(h)
        return h

    def _activate(self, h: np.ndarray) -> None:
        """The members' hidden units, in place."""
        if self.activation == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0.01 * h, out=h)
