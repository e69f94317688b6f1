"""Segments of stacked frames that store every frame once (Christiano et al. 2017, App. A.2).

An Atari observation is a stack of the last 4 frames, so consecutive observations share 3 of their 4 frames,
consecutive segments of one env share 3 frames, and one segment often appears in several labelled pairs. Kept
as stacks, a 25-step segment is ``25·4`` frames of 84×84; here it is ``(25, 4)`` indices into a
:class:`FrameStore`, which holds each distinct frame once as uint8 with a reference count. A pair then costs
at most ``2·(25+3)`` frames (≈395 kB) instead of 200 (≈1.4 MB), and the 3,000 pairs the paper keeps fit in
≈1.2 GB at worst.

The classes keep the interfaces of the core ones, so the trainer, teachers, query selection and the label
store work unchanged:

* :class:`FrameStackSegment` is a :class:`~prefrl.segments.Segment` whose ``obs`` is rebuilt on access;
* :class:`FrameStackCollector` has :class:`~prefrl.segments.SegmentCollector`'s ``add``/``reset``;
* :class:`FramePreferenceDataset` has :class:`~prefrl.preference_dataset.PreferenceDataset`'s API;
* :class:`FrameSegmentPool` is a :class:`~prefrl.segments.SegmentPool` that bounds the memory of
  :meth:`~FrameSegmentPool.observations`.

Frames are keyed by content (a CRC plus an exact comparison), so identical frames share a slot wherever they
come from, including segments loaded back from the label store when a run resumes.
"""

from __future__ import annotations

import dataclasses
import heapq
import weakref
import zlib
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from prefrl.preference_dataset import PreferenceDataset
from prefrl.segments import Segment, SegmentPool

BLOCK = 4096  # frames per storage block: the store grows without copying what it holds
MAX_SAMPLE_BYTES = 64 * 2**20  # uint8 observation bytes handed out at once for statistics


def _new_uid() -> int:
    uid_field = next(f for f in dataclasses.fields(Segment) if f.name == "uid")
    return int(cast(Callable[[], int], uid_field.default_factory)())


class FrameStore:
    """Distinct frames of shape ``frame_shape`` as uint8, each once, with reference counts.

    Storage grows in blocks of :data:`BLOCK` frames; a frame whose count drops to 0 frees its slot for the
    next new frame (lowest slot first, so the occupied blocks stay few).

    Args:
        frame_shape: e.g. ``(84, 84)``.
    """

    def __init__(self, frame_shape: tuple[int, ...]) -> None:
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self._blocks: list[np.ndarray] = []
        self._refs = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._by_key: dict[int, int | list[int]] = {}

    # ------------------------------------------------------------------------------ counting
    def __len__(self) -> int:
        """Frames held now."""
        return int((self._refs > 0).sum())

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the frames held now (the blocks allocated may be more)."""
        return len(self) * self.frame_bytes

    # ------------------------------------------------------------------------------- frames in
    def intern(self, frame: np.ndarray) -> int:
        """The id of ``frame``, added if new; takes one reference (give it back with :meth:`release`)."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.shape != self.frame_shape:
            raise ValueError(f"frame shape {frame.shape} differs from the store's {self.frame_shape}")
        key = zlib.crc32(frame.data)
        found = self._by_key.get(key)
        for fid in (found,) if isinstance(found, int) else (found or ()):
            if np.array_equal(self._frame(fid), frame):
                self._refs[fid] += 1
                return fid
        fid = self._allocate()
        self._blocks[fid // BLOCK][fid % BLOCK] = frame
        self._refs[fid], self._keys[fid] = 1, key
        if found is None:
            self._by_key[key] = fid
        elif isinstance(found, int):
            self._by_key[key] = [found, fid]
        else:
            found.append(fid)
        return fid

    def intern_stacks(self, stacks: np.ndarray) -> np.ndarray:
        """Ids ``(L, k)`` for observations ``(L, k, *frame_shape)``; one reference per entry."""
        ids = np.empty(stacks.shape[:2], dtype=np.int32)
        for t in range(stacks.shape[0]):
            for j in range(stacks.shape[1]):
                ids[t, j] = self.intern(stacks[t, j])
        return ids

    def retain(self, ids: np.ndarray) -> None:
        """One more reference for every entry of ``ids``."""
        np.add.at(self._refs, np.asarray(ids, dtype=np.int64).reshape(-1), 1)

    def release(self, ids: np.ndarray) -> None:
        """Give back one reference per entry of ``ids``; frames left with none are dropped."""
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        np.subtract.at(self._refs, flat, 1)
        for fid in np.unique(flat[self._refs[flat] <= 0]):
            self._drop(int(fid))

    # ------------------------------------------------------------------------------ frames out
    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Frames ``(*ids.shape, *frame_shape)`` for an int array of ids (a new array)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._blocks) == 1:
            return self._blocks[0][ids]
        out = np.empty((*ids.shape, *self.frame_shape), dtype=np.uint8)
        block, offset = np.divmod(ids, BLOCK)
        for b in np.unique(block):
            where = block == b
            out[where] = self._blocks[b][offset[where]]
        return out

    def _frame(self, fid: int) -> np.ndarray:
        return self._blocks[fid // BLOCK][fid % BLOCK]

    def _allocate(self) -> int:
        if not self._free:
            start = len(self._blocks) * BLOCK
            # np.zeros maps fresh pages lazily: a block costs memory only as frames are written into it.
            self._blocks.append(np.zeros((BLOCK, *self.frame_shape), dtype=np.uint8))
            self._refs = np.concatenate([self._refs, np.zeros(BLOCK, dtype=np.int64)])
            self._keys = np.concatenate([self._keys, np.zeros(BLOCK, dtype=np.int64)])
            self._free = list(range(start, start + BLOCK))  # already a heap
        return heapq.heappop(self._free)

    def _drop(self, fid: int) -> None:
        self._refs[fid] = 0
        key = int(self._keys[fid])
        found = self._by_key.get(key)
        if isinstance(found, list):
            found.remove(fid)
            if len(found) == 1:
                self._by_key[key] = found[0]
        elif found == fid:
            del self._by_key[key]
        heapq.heappush(self._free, fid)


class FrameStackSegment(Segment):
    """A :class:`Segment` whose observations are indices into a :class:`FrameStore`.

    ``obs`` is rebuilt on each access as ``(length, k, *frame_shape)`` uint8. The segment holds a reference
    to each of its frames for as long as it lives.

    Args:
        store: where the frames are.
        frame_ids: ``(length, k)`` ids; the segment takes its own references.
        acts, true_rewards: as in :class:`Segment`.
        ale_state: the emulator state the segment's first step started from, to replay it in colour.
        frames: optional RGB frames ``(length, H, W, 3)``, only for pairs shown to people (App. B).
    """

    def __init__(
        self,
        store: FrameStore,
        frame_ids: np.ndarray,
        acts: np.ndarray,
        true_rewards: np.ndarray,
        *,
        ale_state: Any = None,
        frames: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self.frame_ids = np.array(frame_ids, dtype=np.int32)
        store.retain(self.frame_ids)
        weakref.finalize(self, store.release, self.frame_ids)
        self.acts, self.true_rewards = acts, true_rewards
        self.states = None  # clips come from `frames`, never from a MuJoCo state
        self.frames = frames
        self.ale_state = ale_state
        self.uid = _new_uid()

    @property
    def obs(self) -> np.ndarray:  # type: ignore[override]
        return self.store.gather(self.frame_ids)

    def with_frames(self, frames: np.ndarray) -> FrameStackSegment:
        """A copy sharing this segment's frames (and uid), carrying RGB ``frames`` for a clip."""
        copy = FrameStackSegment(self.store, self.frame_ids, self.acts, self.true_rewards, frames=frames)
        copy.uid = self.uid
        return copy

    def __repr__(self) -> str:
        return f"FrameStackSegment(uid={self.uid}, length={len(self)}, true_return={self.true_return:.3g})"


class FrameStackCollector:
    """Cuts a vectorised stream of stacked observations into :class:`FrameStackSegment`\\ s.

    Like :class:`~prefrl.segments.SegmentCollector` (disjoint segments of ``segment_length`` steps that never
    span two episodes), with two differences: only frame ids are kept, and an episode that ends emits one more
    segment, its last ``segment_length`` steps, so that the synthetic teacher sees episode ends (App. A.2: an
    episode end is a penalty) even though a segment may then overlap the one before it.

    Args:
        num_envs: envs in the vectorised env.
        segment_length: steps per segment.
        store: where frames go.
        keep_episode_ends: emit the end-of-episode segment described above.
    """

    def __init__(
        self, *, num_envs: int, segment_length: int, store: FrameStore, keep_episode_ends: bool = True
    ) -> None:
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1; got {segment_length}")
        self.segment_length, self.store, self.keep_episode_ends = segment_length, store, keep_episode_ends
        self._ids: np.ndarray | None = None  # (n, L, k) ring of the last L steps' frame ids
        self._acts: np.ndarray | None = None
        self._rews = np.zeros((num_envs, segment_length), dtype=np.float32)
        self._states: list[list[Any]] = [[None] * segment_length for _ in range(num_envs)]
        self._filled = np.zeros(num_envs, dtype=np.int64)  # steps in the ring (at most L)
        self._since = np.zeros(num_envs, dtype=np.int64)  # steps since the last segment ended
        self._head = np.zeros(num_envs, dtype=np.int64)  # ring slot of the next step

    def add(
        self,
        obs: np.ndarray,
        acts: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        states: list[Any] | None = None,
    ) -> list[Segment]:
        """Record one vectorised step (``obs (n, k, H, W)`` the agent acted on); returns finished segments.

        ``states`` are per-env emulator states the step started from (or None).
        """
        n, length = len(obs), self.segment_length
        if self._ids is None or self._acts is None:
            self._ids = np.zeros((n, length, obs.shape[1]), dtype=np.int32)
            self._acts = np.zeros((n, length, *np.asarray(acts).shape[1:]), dtype=np.asarray(acts).dtype)
        finished: list[Segment] = []
        for i in range(n):
            h = self._head[i]
            if self._filled[i] == length:  # the ring is full: its oldest step leaves
                self.store.release(self._ids[i, h])
            self._ids[i, h] = self._stack_ids(i, obs[i])
            self._acts[i, h], self._rews[i, h] = acts[i], true_rewards[i]
            self._states[i][h] = None if states is None else states[i]
            self._head[i] = (h + 1) % length
            self._filled[i] = min(self._filled[i] + 1, length)
            self._since[i] += 1
            ends_episode = bool(dones[i]) and self.keep_episode_ends and self._filled[i] == length
            if self._since[i] == length or (ends_episode and self._since[i] > 0):
                finished.append(self._segment(i))
                self._since[i] = 0
            if dones[i]:
                self._clear(i)
        return finished

    def reset(self) -> None:
        """Drop all partial segments (after the env itself was reset)."""
        for i in range(len(self._filled)):
            self._clear(i)

    def _stack_ids(self, i: int, stack: np.ndarray) -> np.ndarray:
        """Frame ids of one observation: within an episode only its newest frame is new."""
        assert self._ids is not None
        if self._filled[i] > 0:
            prev = self._ids[i, (self._head[i] - 1) % self.segment_length]
            # Stacks shift by one frame per step; checking one frame catches a stream that does not.
            if np.array_equal(self.store.gather(prev[-1:])[0], stack[-2]):
                self.store.retain(prev[1:])
                return np.append(prev[1:], self.store.intern(stack[-1]))
        return np.array([self.store.intern(frame) for frame in stack], dtype=np.int32)

    def _segment(self, i: int) -> FrameStackSegment:
        assert self._ids is not None and self._acts is not None
        order = (self._head[i] + np.arange(self.segment_length)) % self.segment_length
        return FrameStackSegment(
            self.store,
            self._ids[i, order],
            self._acts[i, order].copy(),
            self._rews[i, order].copy(),
            ale_state=self._states[i][order[0]],
        )

    def _clear(self, i: int) -> None:
        assert self._ids is not None or self._filled[i] == 0
        if self._filled[i]:
            h, filled, length = self._head[i], self._filled[i], self.segment_length
            slots = (h - 1 - np.arange(filled)) % length
            self.store.release(self._ids[i, slots])  # type: ignore[index]
        self._states[i] = [None] * self.segment_length
        self._filled[i] = self._since[i] = self._head[i] = 0


class FrameSegmentPool(SegmentPool):
    """A :class:`SegmentPool` of frame-stack segments whose :meth:`observations` has bounded memory."""

    def observations(self, max_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``max_steps`` (obs, act) rows, and no more than :data:`MAX_SAMPLE_BYTES` of observations."""
        if len(self):
            max_steps = min(max_steps, max(1, MAX_SAMPLE_BYTES // _step_bytes(self[0])))
        return super().observations(max_steps, rng)


def _step_bytes(segment: Segment) -> int:
    if isinstance(segment, FrameStackSegment):
        return segment.frame_ids.shape[1] * segment.store.frame_bytes
    return int(segment.obs[0].nbytes)


class FramePreferenceDataset(PreferenceDataset):
    r""":class:`~prefrl.preference_dataset.PreferenceDataset`'s ring buffer of labelled pairs, holding frame
    ids instead of observations (App. A.2: keep the newest 3,000 labels).

    A pair holds references to its frames, never to its segments, so a segment's RGB clip frames and emulator
    state are not kept. Segments from another store or plain :class:`Segment`\ s (e.g. loaded back from the
    label store) are split into frames on ``add``.

    Args:
        max_size: keep only the newest ``max_size`` pairs (None: keep all).
        store: the frame store, shared with the segment collector so pool and dataset share frames; by
            default the store of the first segment added (or a new one).
    """

    def __init__(self, max_size: int | None = None, *, store: FrameStore | None = None) -> None:
        self._slots = _Slots()  # frame ids and size, shared with the finalizer
        self.store = store
        self._finalizer: weakref.finalize | None = None
        super().__init__(max_size)

    # The payload is the pair's frame ids (2, L, k); they live in _slots so the finalizer can release them.
    @property  # type: ignore[override]
    def _payload(self) -> np.ndarray | None:
        return self._slots.ids if len(self._slots.ids) else None

    @_payload.setter
    def _payload(self, value: np.ndarray | None) -> None:
        if value is not None:
            self._slots.ids = value

    @property  # type: ignore[override]
    def _size(self) -> int:
        return self._slots.size

    @_size.setter
    def _size(self, value: int) -> None:
        self._slots.size = value

    def _encode(self, left: Segment, right: Segment) -> np.ndarray:
        return np.stack([self._frame_ids(left), self._frame_ids(right)])

    def _decode(self, payload: np.ndarray) -> np.ndarray:
        assert self.store is not None
        return self.store.gather(payload)

    def _release(self, payload: np.ndarray) -> None:
        if self.store is not None:
            self.store.release(payload)

    def all_steps(self, max_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``max_steps`` (obs, act) rows from random pairs, within :data:`MAX_SAMPLE_BYTES` of obs."""
        if self.store is not None and self._payload is not None:
            step_bytes = self._payload.shape[3] * self.store.frame_bytes
            max_steps = min(max_steps, max(1, MAX_SAMPLE_BYTES // step_bytes))
        return super().all_steps(max_steps, rng)

    def _frame_ids(self, segment: Segment) -> np.ndarray:
        """Ids ``(L, k)`` of a segment's frames in this dataset's store, with one reference per entry."""
        if self.store is None:
            self.store = (
                segment.store if isinstance(segment, FrameStackSegment) else FrameStore(segment.obs.shape[2:])
            )
        if isinstance(segment, FrameStackSegment) and segment.store is self.store:
            self.store.retain(segment.frame_ids)
            return segment.frame_ids.copy()
        return self.store.intern_stacks(np.asarray(segment.obs))

    def _grow(self, capacity: int, payload: np.ndarray, acts: np.ndarray) -> None:
        super()._grow(capacity, payload, acts)
        if self._finalizer is None:
            assert self.store is not None
            # Pairs still held when the dataset is dropped give their frames back to a store that outlives it.
            self._finalizer = weakref.finalize(self, self._slots.release, self.store)


class _Slots:
    """The dataset's frame ids ``(capacity, 2, L, k)`` and how many are in use (shared with its finalizer)."""

    def __init__(self) -> None:
        self.ids = np.zeros((0, 2, 0, 0), dtype=np.int32)
        self.size = 0

    def release(self, store: FrameStore) -> None:
        store.release(self.ids[: self.size])
        self.size = 0
