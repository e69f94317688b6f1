"""How many labels to have asked for by env step T (Christiano et al. 2017, App. A).

A share of the budget (MuJoCo 25 %, Atari 500 labels) is gathered from a random policy before RL.
Afterwards labels are requested at a rate proportional to c / (T + c) (MuJoCo c = 2·10⁶, Atari
c = 5·10⁶), scaled so that the whole budget is spent by ``T_end`` (the run spec puts it two reward-model
updates before the run's last step, so that the last answers are fitted):

    labels_due(T) = initial + (total - initial) · log(1 + T/c) / log(1 + T_end/c)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelSchedule:
    """Args:
    total_labels: the whole label budget.
    initial_labels: labels from the random policy before RL starts.
    total_steps: env steps of the whole run.
    rate_constant: c in the rate c / (T + c).
    """

    total_labels: int
    initial_labels: int
    total_steps: int
    rate_constant: float = 2e6

    def __post_init__(self) -> None:
        if self.total_labels < 0:
            raise ValueError(f"the label budget must be >= 0; got {self.total_labels}")
        if not 0 <= self.initial_labels <= self.total_labels:
            raise ValueError(
                f"the label budget ({self.total_labels}) is smaller than the initial share "
                f"({self.initial_labels}); raise --labels or lower --initial-labels"
            )
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be > 0; got {self.total_steps}")
        if self.rate_constant <= 0:
            raise ValueError(f"rate_constant must be > 0; got {self.rate_constant}")

    @classmethod
    def from_fraction(
        cls,
        total_labels: int,
        total_steps: int,
        *,
        initial_fraction: float = 0.25,
        rate_constant: float = 2e6,
    ) -> LabelSchedule:
        return cls(total_labels, round(initial_fraction * total_labels), total_steps, rate_constant)

    def labels_due(self, step: int) -> int:
        """Labels that should have been requested by env step ``step`` (RL steps, after pre-training)."""
        c = self.rate_constant
        progress = math.log1p(min(max(step, 0), self.total_steps) / c) / math.log1p(self.total_steps / c)
        return self.initial_labels + math.floor((self.total_labels - self.initial_labels) * progress + 1e-9)
