"""The reward predictor for pixel observations (Christiano et al. 2017, App. A.2).

    84×84×4 stacked frames → conv 7×7 stride 3 → conv 5×5 stride 2 → conv 3×3 stride 1 → conv 3×3 stride 1
    (16 filters each, batch norm, leaky ReLU 0.01, dropout 0.5) → fully connected 64 → 1

The reward depends on the observations only (people judge clips; they cannot see the actions). A
:class:`CNNReward` is one member of the same :class:`~prefrl.reward_model.RewardEnsemble` the MLPs use: fitted
with bootstrap resampling, a 1/e hold-out and the adaptive L2 coefficient, and normalised to output std 0.05.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prefrl.reward_model import RewardEnsemble

CONV_LAYERS = ((7, 3), (5, 2), (3, 1), (3, 1))  # (kernel, stride), App. A.2
ATARI_OUTPUT_STD = 0.05  # App. A: each member normalised to std 0.05 on Atari
ATARI_BATCH_PAIRS = 16
"""Pairs per gradient step: 16 pairs of 25-step segments are 800 stacks, ≈0.5 GB of activations on a CPU."""


class ByteDropout(nn.Dropout):
    """Dropout whose CPU masks come from random bytes: the same layer as :class:`torch.nn.Dropout`, faster.

    On a CPU, ``nn.Dropout`` draws one Bernoulli number at a time (about 120 ms for the first conv layer's
    800×16×26×26 activations, a third of a training step); here numpy's generator fills a byte per unit and a
    byte below ``256·p`` drops it. That is exact when ``256·p`` is a whole number (0.5 is); other ``p`` and
    other devices use ``nn.Dropout``'s own masks. Each mask's seed is drawn from torch's generator, so
    ``torch.manual_seed`` and a saved torch RNG state reproduce the masks as they would ``nn.Dropout``'s.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = 256 * self.p
        if not self.training or self.p == 0 or x.device.type != "cpu" or threshold != int(threshold):
            return super().forward(x)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        draws = np.frombuffer(np.random.default_rng(seed).bytes(x.numel()), dtype=np.uint8)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            n, c, h, w = x.shape  # the mask in x's own memory order, so the product is one linear pass
            keep = torch.from_numpy(draws.reshape(n, h, w, c) >= threshold).permute(0, 3, 1, 2)
        else:
            keep = torch.from_numpy(draws.reshape(x.shape) >= threshold)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


def is_frame_stack_space(space: gym.Space) -> bool:
    """Whether observations are channel-first stacks of uint8 frames ``(k, H, W)`` (the Atari tasks')."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[0] < min(space.shape[1:])
    )


class CNNReward(nn.Module):
    """r̂(o) for stacked frames, the paper's Atari predictor (App. A.2).

    Args:
        obs_shape: ``(k, H, W)`` of one observation (uint8, scaled to [0, 1] inside).
        filters: channels of each conv layer.
        hidden: width of the fully connected layer.
        dropout: dropout after each conv layer (0.5 in the paper).
        leak: negative slope of the leaky ReLUs.
        chunk: without gradients, score at most this many observations at once, so that scoring 20,000
            steps for normalisation never materialises 20,000 float stacks.
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int] = (4, 84, 84),
        *,
        filters: int = 16,
        hidden: int = 64,
        dropout: float = 0.5,
        leak: float = 0.01,
        chunk: int = 256,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = obs_shape[0]
        for kernel, stride in CONV_LAYERS:
            layers += [nn.Conv2d(channels, filters, kernel, stride), nn.BatchNorm2d(filters)]
            layers.append(nn.LeakyReLU(leak))
            if dropout > 0:
                layers.append(ByteDropout(dropout))
            channels = filters
        self.convs = nn.Sequential(*layers)
        height, width = obs_shape[1:]
        for kernel, stride in CONV_LAYERS:
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        if min(height, width) < 1:
            raise ValueError(f"frames of {obs_shape[1:]} are too small for the conv stack; use >= 43×43")
        flat = filters * height * width
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.LeakyReLU(leak), nn.Linear(hidden, 1)
        )
        self.chunk = chunk
        # Channels-last convolutions are about 1.4× faster on a CPU for these small filter counts.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @staticmethod
    def fused(ensemble: RewardEnsemble) -> FusedCNNEnsemble:
        """An ensemble of these members as one grouped network, for per-step inference."""
        return FusedCNNEnsemble(ensemble)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards ``(N,)`` for observations ``(N, k, H, W)``; ``acts`` is ignored."""
        if torch.is_grad_enabled() or len(obs) <= self.chunk:
            return self._scores(obs)
        return torch.cat([self._scores(obs[i : i + self.chunk]) for i in range(0, len(obs), self.chunk)])

    def _scores(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(dtype=torch.float32, memory_format=torch.channels_last)
        first: nn.Conv2d = self.convs[0]  # type: ignore[assignment]
        # Pixel bytes are scaled to [0, 1] inside the first convolution (its weights / 255), which saves a
        # full pass over the input stacks.
        weight = first.weight / 255.0 if obs.dtype == torch.uint8 else first.weight
        x = F.conv2d(x, weight, first.bias, first.stride)
        return self.head(self.convs[1:](x)).squeeze(-1)


class FusedCNNEnsemble:
    """The CNN ensemble's eval-mode forward as one network of grouped convolutions.

    The agent's reward is asked for once per vectorised step, on a handful of stacks (16 on Pong). Run
    member by member, that is some forty small ops and module calls per step, and on a GPU their launch
    overhead is nearly all the cost: py-spy put the per-step reward at 18 % of the agent's thread in the
    Pong preference run there (``benchmarks/results/gpu_profile.json``). Here the members sit side by side
    as the channel groups of one network, so each layer is one op for the whole ensemble: the first
    convolution's filters are concatenated (every member sees the same frames, and the 1/255 pixel scale
    is in its weights), later ones are grouped by member, each batch norm (in eval mode an affine map per
    channel) is folded into the convolution before it, dropout is off, and the two fully connected layers
    are batched products over members with the output normalisation folded into the last. One call on 16
    stacks: 3.4 ms → 0.95 ms on an H100, 9.4 ms → 6.5 ms on one CPU core
    (``benchmarks/results/reward_step_speed*.json``).
    """

    def __init__(self, ensemble: RewardEnsemble) -> None:
        members: list[CNNReward] = list(ensemble.members)  # type: ignore[arg-type]
        self.num_members, self.device = len(members), ensemble.device
        self.chunk = members[0].chunk
        with torch.no_grad():
            self.convs: list[tuple[torch.Tensor, torch.Tensor]] = []
            for depth in range(len(CONV_LAYERS)):
                weights, biases = [], []
                for member in members:
                    conv = [m for m in member.convs if isinstance(m, nn.Conv2d)][depth]
                    norm = [m for m in member.convs if isinstance(m, nn.BatchNorm2d)][depth]
                    assert (
                        conv.bias is not None
                        and norm.running_mean is not None
                        and norm.running_var is not None
                    )
                    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                    weights.append(conv.weight * scale[:, None, None, None])
                    biases.append((conv.bias - norm.running_mean) * scale + norm.bias)
                weight = torch.cat(weights).contiguous(memory_format=torch.channels_last)
                self.convs.append((weight, torch.cat(biases)))
            first, last = (
                [[m for m in member.head if isinstance(m, nn.Linear)][i] for member in members]
                for i in (0, 1)
            )
            relu = next(m for m in members[0].head if isinstance(m, nn.LeakyReLU))
            self.leak = float(relu.negative_slope)
            self.first_w = torch.stack([f.weight for f in first])  # (K, hidden, flat)
            self.first_b = torch.stack([f.bias for f in first])  # (K, hidden)
            # (r - out_mean) * out_scale folded into the last layer.
            scale, mean = ensemble.out_scale, ensemble.out_mean
            self.last_w = torch.stack([f.weight[0] for f in last]) * scale[:, None]  # (K, hidden)
            self.last_b = (torch.cat([f.bias for f in last]) - mean) * scale  # (K,)
        self.first_conv_bytes = self.convs[0][0] / 255.0  # for uint8 stacks, as CNNReward scales them

    @torch.no_grad()
    def members(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Each member's normalised reward, ``(N, K)``; ``acts`` is ignored."""
        o = torch.as_tensor(obs, device=self.device)
        out = torch.cat([self._scores(o[i : i + self.chunk]) for i in range(0, len(o), self.chunk)])
        return out.cpu().numpy()

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The members' mean normalised reward, ``(N,)``."""
        return self.members(obs, acts).mean(1)

    def _scores(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(dtype=torch.float32, memory_format=torch.channels_last)
        for depth, ((weight, bias), (_, stride)) in enumerate(zip(self.convs, CONV_LAYERS)):
            if depth == 0 and obs.dtype == torch.uint8:
                weight = self.first_conv_bytes
            groups = 1 if depth == 0 else self.num_members  # every member sees the same frames first
            x = F.leaky_relu(F.conv2d(x, weight, bias, stride, groups=groups), self.leak)
        # Member k's channels are the k-th block; flattened (channel, row, column) as nn.Flatten does.
        x = x.reshape(len(x), self.num_members, -1)
        h = F.leaky_relu(torch.einsum("nkd,khd->nkh", x, self.first_w) + self.first_b, self.leak)
        return (h * self.last_w).sum(-1) + self.last_b


def cnn_ensemble(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    ensemble_size: int = 3,
    dropout: float = 0.5,
    output_std: float = ATARI_OUTPUT_STD,
    batch_size: int = ATARI_BATCH_PAIRS,
    device: str = "cpu",
    use_actions: bool = False,
    activation: str = "leaky-relu",
    **kwargs: float,
) -> RewardEnsemble:
    """An ensemble of :class:`CNNReward` members for stacked-frame observations (App. A.2).

    Args:
        observation_space: a ``(k, H, W)`` uint8 Box (see :func:`is_frame_stack_space`).
        action_space: the env's (the members ignore actions; the ensemble still needs it).
        ensemble_size: members (3 in the paper).
        dropout: after each conv layer.
        output_std: std of each normalised member.
        batch_size: pairs per gradient step.
        device: torch device.
        use_actions: must be False: the members see frames only (App. A.2).
        activation: must be ``leaky-relu``: the CNN's units are App. A.2's.
        **kwargs: more :class:`RewardEnsemble` settings (``lr``, ``l2_coef``).
    """
    if not is_frame_stack_space(observation_space):
        raise ValueError(
            f"the CNN reward needs (k, H, W) uint8 stacked frames; got {observation_space} "
            "(use RewardEnsemble.for_spaces for vector observations)"
        )
    if use_actions:
        raise ValueError("the CNN reward sees frames only (App. A.2); it cannot take actions")
    if activation != "leaky-relu":
        raise ValueError(f"the CNN reward keeps App. A.2's leaky ReLU units; got activation {activation!r}")
    shape = tuple(int(d) for d in observation_space.shape)  # type: ignore[union-attr]
    members: list[nn.Module] = [CNNReward(shape, dropout=dropout) for _ in range(ensemble_size)]  # type: ignore[arg-type]
    return RewardEnsemble(
        members,
        action_space,
        output_std=output_std,
        batch_size=batch_size,
        device=device,
        **kwargs,  # type: ignore[arg-type]
    )
