"""Compact, atomic replay-buffer files, so that an off-policy run (PEBBLE, Lee et al. 2021) resumed after a
kill goes on with the experience it had.

A full SAC buffer on Hopper holds 1M transitions (SB3's default ``buffer_size``), and SB3 keeps each float64
observation twice (``observations`` and ``next_observations``): about 200 MB a checkpoint if written as
stored. Three savings, none of which changes anything the agent or the reward model reads:

1. Only the filled rows are written (``pos``/``full`` say which).
2. Float64 observations are written as float32: SB3's policies cast observations to float32 before their
   first layer (``preprocess_obs``) and the reward ensemble scores float32 features, so the extra bits are
   never used. ``obs_dtype=None`` keeps the buffer's own dtype (a lossless copy).
3. A next observation is written only where it differs from the same env's observation one row later:
   within an episode they are the same state, stored twice. What remains is episode ends (SB3 stores the
   terminal observation, the next row holds the reset one) and the newest row, whose successor is not yet
   stored. The comparison is exact, so no assumption about ``dones`` or timeouts is needed.

With ``optimize_memory_usage`` SB3 stores each observation once already; the observation in row ``pos`` is
then the newest transition's next observation and is written too.

The file is an ``.npz`` written to a temporary name beside the target and renamed into place (``os.replace``),
so a process killed while writing leaves the previous file whole. Callers can add small arrays of their own
(``extra``, e.g. the running statistics of an exploration bonus); :func:`load_replay_buffer` gives them back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike
from stable_baselines3.common.buffers import ReplayBuffer

FORMAT_VERSION = 1
_EXTRA = "extra/"


def filled_rows(buffer: ReplayBuffer) -> int:
    """Rows of ``buffer`` that hold transitions (each row holds one per env)."""
    return buffer.buffer_size if buffer.full else buffer.pos


def save_replay_buffer(
    buffer: ReplayBuffer,
    path: str | Path,
    *,
    obs_dtype: DTypeLike | None = np.float32,
    extra: Mapping[str, np.ndarray] | None = None,
) -> int:
    """Write the filled rows of ``buffer`` to ``path`` (an ``.npz``) atomically; returns the file's size.

    Args:
        buffer: an SB3 :class:`ReplayBuffer` (SAC's or TD3's; not a ``DictReplayBuffer``), any ``n_envs``.
        path: the file to write; replaced only once the new one is complete.
        obs_dtype: dtype that float64 observations are written in (float32 by default; see the module
            docstring); None, or observations of any other dtype (e.g. uint8 frames), are written as stored.
        extra: small named arrays saved alongside and returned by :func:`load_replay_buffer`.
    """
    if not isinstance(buffer.observations, np.ndarray):
        raise TypeError(f"save_replay_buffer handles flat-array replay buffers; got {type(buffer).__name__}")
    rows = filled_rows(buffer)
    dtype = buffer.observations.dtype
    if obs_dtype is not None and dtype == np.float64:
        dtype = np.dtype(obs_dtype)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "buffer_size": np.array(buffer.buffer_size),
        "n_envs": np.array(buffer.n_envs),
        "pos": np.array(buffer.pos),
        "full": np.array(buffer.full),
        "actions": buffer.actions[:rows],
        "rewards": buffer.rewards[:rows],
        "dones": _as_flags(buffer.dones[:rows]),
        "timeouts": _as_flags(buffer.timeouts[:rows]),
    }
    if buffer.optimize_memory_usage:
        # Row ``pos`` holds the newest transition's next observation (or, when full, every row is in use).
        stored = buffer.buffer_size if buffer.full else rows + 1
        arrays["observations"] = buffer.observations[:stored].astype(dtype, copy=False)
    else:
        obs = buffer.observations[:rows].astype(dtype, copy=False)
        next_obs = buffer.next_observations[:rows].astype(dtype, copy=False)
        differs = (
            (next_obs != obs[_successors(buffer, rows)])
            .reshape(rows, buffer.n_envs, int(np.prod(buffer.obs_shape)))
            .any(-1)
        )
        if rows:
            differs[(buffer.pos - 1) % buffer.buffer_size] = (
                True  # the newest row: its successor is not stored
            )
        where = np.flatnonzero(differs)  # flat (row, env) indices
        arrays["observations"] = obs
        arrays["next_observations_at"] = where
        arrays["next_observations"] = next_obs.reshape(rows * buffer.n_envs, *buffer.obs_shape)[where]
    for name, value in (extra or {}).items():
        arrays[_EXTRA + name] = np.asarray(value)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:  # an open file: np.savez adds no ".npz" suffix
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def load_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> dict[str, np.ndarray]:
    """Fill ``buffer`` from a file of :func:`save_replay_buffer`; returns the ``extra`` arrays saved with it.

    Args:
        buffer: a new buffer of the same ``buffer_size``, ``n_envs``, spaces and ``optimize_memory_usage`` as
            the saved one (e.g. the replay buffer of a freshly built agent with the run's settings).
    """
    with np.load(path) as data:
        if "format_version" not in data.files:
            return _load_as_stored(buffer, data)
        saved_shape, wanted_shape = data["observations"].shape[2:], buffer.obs_shape
        saved = (int(data["buffer_size"]), int(data["n_envs"]), "next_observations_at" not in data.files)
        wanted = (buffer.buffer_size, buffer.n_envs, buffer.optimize_memory_usage)
        if saved != wanted or saved_shape != wanted_shape:
            raise ValueError(
                f"{path} holds a buffer of {saved[0]} rows for {saved[1]} envs (optimize_memory_usage="
                f"{saved[2]}, observations {saved_shape}); this buffer has {wanted[0]} rows for "
                f"{wanted[1]} envs (optimize_memory_usage={wanted[2]}, observations {wanted_shape}): "
                "build the agent with the settings of the run that saved it"
            )
        rows = len(data["rewards"])
        buffer.observations[: len(data["observations"])] = data["observations"]
        buffer.actions[:rows] = data["actions"]
        buffer.rewards[:rows] = data["rewards"]
        buffer.dones[:rows] = data["dones"]
        buffer.timeouts[:rows] = data["timeouts"]
        if not buffer.optimize_memory_usage:
            buffer.next_observations[:rows] = buffer.observations[_successors(buffer, rows)]
            flat = buffer.next_observations[:rows].reshape(rows * buffer.n_envs, *buffer.obs_shape)
            flat[data["next_observations_at"]] = data["next_observations"]
        buffer.pos, buffer.full = int(data["pos"]), bool(data["full"])
        return {name[len(_EXTRA) :]: data[name] for name in data.files if name.startswith(_EXTRA)}


def _load_as_stored(buffer: ReplayBuffer, data: Any) -> dict[str, np.ndarray]:
    """Files from before this format (runs of prefrl 0.x): the filled rows of every field as stored, with
    ``pos``, ``full`` and, for the exploration bonus, ``intrinsic`` and ``moments`` beside them."""
    rows = len(data["rewards"])
    if rows > buffer.buffer_size:
        raise ValueError(f"the file holds {rows} transitions; the buffer has room for {buffer.buffer_size}")
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        if name in data.files and getattr(buffer, name) is not None:
            getattr(buffer, name)[:rows] = data[name]
    buffer.pos, buffer.full = int(data["pos"]), bool(data["full"])
    return {name: data[name] for name in ("intrinsic", "moments") if name in data.files}


def _successors(buffer: ReplayBuffer, rows: int) -> np.ndarray:
    """The row after each filled row, in the ring's order (the newest row's successor is not stored: it is
    given itself, and its next observation is always written out)."""
    return np.minimum((np.arange(rows) + 1) % buffer.buffer_size, max(rows - 1, 0))


def _as_flags(values: np.ndarray) -> np.ndarray:
    """0/1 floats (SB3's dones and timeouts) as bools, an eighth of the size; anything else as it is."""
    return values.astype(bool) if np.isin(values, (0, 1)).all() else values
