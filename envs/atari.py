"""Atari task variants of Christiano et al. 2017, App. A.2, registered as ``prefrl/<Game>NoScore-v0``.

The paper trains the agent on a reward learned from clips, so nothing on the screen or in the env's signals
may give the true reward away:

* **Standard preprocessing.** 0-30 no-op starts, frame skip 4 with a max-pool of the last two frames, 84×84
  greyscale, a stack of the last 4 frames: observations are ``(4, 84, 84)`` uint8, channel first.
* **Score blacked out.** Each game's score area (plus BeamRider's enemy-ship count and Enduro's dashboard with
  its odometer/speed digits and cars-to-pass counter) is set to 0 in every observation and in the colour clips
  rendered for people. The regions were read off real frames: see :data:`GAMES`.
* **No life-loss or episode-end signal.** Losing a life signals nothing; at game over the env reports
  ``truncated=True`` and never ``terminated``, so an SB3 agent bootstraps through the reset instead of
  learning that the episode ends (the env still resets). For the synthetic teacher an episode end is a
  penalty, added to the true reward of the last step (``info["end_penalty"]``), in every game except Pong.
* **Repeatable clips.** ``info["ale_state"]`` is the emulator state each step started from, so a segment can
  be replayed in full colour with :meth:`AtariPreferenceEnv.replay_rgb` (sticky actions are off, as in the
  paper's NoFrameskip-v4 setting, so a replay repeats the original exactly).

Usage::

    import gymnasium as gym
    import prefrl.envs  # registers the ids in ATARI_TASKS

    env = gym.make("prefrl/PongNoScore-v0")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np
from ale_py import AtariEnv
from gymnasium.utils import RecordConstructorArgs

from .namespace import NAMESPACE

RAW_SHAPE = (210, 160)
SCREEN_SIZE = 84
FRAME_SKIP = 4
FRAME_STACK = 4
NOOP_MAX = 30
MAX_EPISODE_FRAMES = 108_000  # ALE v5's cap (30 min of play): a truncation, never penalised

Region = tuple[int, int, int, int]
"""``(row_start, row_stop, col_start, col_stop)`` in raw 210×160 screen pixels, stops exclusive."""


@dataclass(frozen=True)
class AtariGame:
    """One game of App. A.2: its ALE ROM name, the regions to black out and the episode-end penalty.

    ``end_penalty`` is subtracted from the true reward when the game is over (the paper gives no value; each
    is worth a few of the game's typical scoring events, so that a teacher prefers staying alive).
    """

    name: str
    rom: str
    blackout: tuple[Region, ...]
    end_penalty: float

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.name}NoScore-v0"


# Regions found on frames of random play (pixels that change while the score does); each has a margin.
GAMES: dict[str, AtariGame] = {
    game.name: game
    for game in (
        # Score digits in rows 1-20; the play field starts below the wall at row 24.
        AtariGame("Pong", "pong", ((0, 24, 0, 160),), 0.0),
        # Dashboard in rows 161-191: odometer (its rolling digit shows the speed), day, cars left to pass.
        AtariGame("Enduro", "enduro", ((157, 195, 0, 160),), 10.0),
        # Score in rows 9-19, sector in 21-29, enemy ships left (top left) and torpedoes in rows 31-40.
        AtariGame("BeamRider", "beam_rider", ((0, 43, 0, 160),), 100.0),
        # Score, lives and player number in rows 5-14, above the wall.
        AtariGame("Breakout", "breakout", ((0, 17, 0, 160),), 10.0),
        # Score in rows 6-13, columns 34-71 (it grows leftward); Q*bert himself can jump near it.
        AtariGame("Qbert", "qbert", ((4, 15, 24, 76),), 100.0),
        # Score in rows 9-16 of the sky; lives (rows 22-29) and oxygen stay visible.
        AtariGame("Seaquest", "seaquest", ((0, 19, 0, 160),), 100.0),
        # Both players' scores in rows 10-19; the invaders start at row 23.
        AtariGame("SpaceInvaders", "space_invaders", ((0, 22, 0, 160),), 50.0),
    )
}
ATARI_TASKS: tuple[str, ...] = tuple(game.id for game in GAMES.values())


def observation_mask(blackout: tuple[Region, ...], size: int = SCREEN_SIZE) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the observation pixels whose source area touches a blacked-out region.

    Blanking these after the resize guarantees that no blurred trace of the score survives in an observation.
    """
    mask = np.zeros((size, size), dtype=bool)
    rows, cols = RAW_SHAPE
    for r0, r1, c0, c1 in blackout:
        mask[
            int(np.floor(r0 * size / rows)) : int(np.ceil(r1 * size / rows)),
            int(np.floor(c0 * size / cols)) : int(np.ceil(c1 * size / cols)),
        ] = True
    return mask


def blackout_frame(frame: np.ndarray, blackout: tuple[Region, ...]) -> np.ndarray:
    """Sets the regions of a raw ``(210, 160[, 3])`` frame to 0, in place; returns it."""
    for r0, r1, c0, c1 in blackout:
        frame[r0:r1, c0:c1] = 0
    return frame


class AtariPreferenceEnv(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """The App. A.2 preprocessing and signals around an ALE env created with ``frameskip=1``.

    Args:
        env: an :class:`ale_py.AtariEnv` with ``frameskip=1`` and ``repeat_action_probability=0``.
        blackout: raw-screen regions to set to 0 (see :data:`GAMES`).
        end_penalty: subtracted from the true reward of the step at which the game is over.
        noop_max: a reset performs a uniform 0..``noop_max`` no-ops.
        frame_skip: emulator frames per agent step (the last two are max-pooled).
        frame_stack: observations stack this many preprocessed frames, oldest first.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        *,
        blackout: tuple[Region, ...] = (),
        end_penalty: float = 0.0,
        noop_max: int = NOOP_MAX,
        frame_skip: int = FRAME_SKIP,
        frame_stack: int = FRAME_STACK,
    ) -> None:
        RecordConstructorArgs.__init__(
            self,
            blackout=blackout,
            end_penalty=end_penalty,
            noop_max=noop_max,
            frame_skip=frame_skip,
            frame_stack=frame_stack,
        )
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.unwrapped, AtariEnv):  # type: ignore[misc]
            raise TypeError(f"expected an ale_py AtariEnv; got {type(env.unwrapped).__name__}")
        if frame_skip < 2:
            raise ValueError(f"frame_skip must be >= 2 (the last two are max-pooled); got {frame_skip}")
        self.ale = env.unwrapped.ale
        self.action_set = env.unwrapped._action_set
        self.blackout: tuple[Region, ...] = tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in blackout)
        self.end_penalty = float(end_penalty)
        self.noop_max, self.frame_skip, self.frame_stack = noop_max, frame_skip, frame_stack
        self._obs_mask = observation_mask(self.blackout)
        self._grey = np.zeros((2, *RAW_SHAPE), dtype=np.uint8)
        self._stack = np.zeros((frame_stack, SCREEN_SIZE, SCREEN_SIZE), dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, self._stack.shape, dtype=np.uint8)
        self.action_space = env.action_space
        # One agent step is frame_skip emulator frames at 60 Hz: clips play at 15 steps per second.
        self.metadata = {**env.metadata, "render_fps": 60 // frame_skip}

    # ------------------------------------------------------------------------------------------ the API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        for _ in range(int(self.np_random.integers(0, self.noop_max + 1))):
            self.ale.act(self.action_set[0])
            if self.ale.game_over():
                self.env.reset()
        self.ale.getScreenGrayscale(self._grey[0])
        self._stack[:] = self._preprocess(self._grey[0])
        return self._stack.copy(), {**info, "ale_state": self.ale.cloneState()}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        start_state = self.ale.cloneState()
        reward, game_over, pooled = self._act(int(action), self.ale.getScreenGrayscale, self._grey)
        truncated = game_over or self.ale.game_truncated()
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = self._preprocess(pooled)
        penalty = -self.end_penalty if game_over else 0.0
        info = {"lives": self.ale.lives(), "ale_state": start_state}
        info.update(game_over=game_over, end_penalty=penalty)
        # Never `terminated`: the agent gets no episode-end signal (App. A.2); the env resets all the same.
        return self._stack.copy(), reward + penalty, False, truncated, info

    def render(self) -> np.ndarray | None:
        """The current screen in full colour with the score blacked out (``render_mode="rgb_array"``)."""
        frame = self.env.render()
        return None if frame is None else blackout_frame(np.array(frame), self.blackout)

    # -------------------------------------------------------------------------------------- clips
    def replay_rgb(self, ale_state: Any, actions: np.ndarray) -> np.ndarray:
        """Full-colour frames ``(len(actions), 210, 160, 3)`` uint8 of a segment, replayed from its start.

        Frame t is what action t led to (the max-pool of the last two emulator frames, score blacked out), as
        people see it in a clip (App. B). Restoring the state changes this env's emulator: use a separate env.
        """
        self.ale.restoreState(ale_state)
        frames = np.zeros((len(actions), *RAW_SHAPE, 3), dtype=np.uint8)
        rgb = np.zeros((2, *RAW_SHAPE, 3), dtype=np.uint8)
        for t, action in enumerate(np.asarray(actions).reshape(-1)):
            _, _, pooled = self._act(int(action), self.ale.getScreenRGB, rgb)
            frames[t] = blackout_frame(pooled, self.blackout)
        return frames

    def replay_observed(self, ale_state: Any, actions: np.ndarray) -> np.ndarray:
        """The preprocessed frames ``(len(actions), 84, 84)`` the agent observed after each action of a replay
        (for checking that a replay repeats the original)."""
        self.ale.restoreState(ale_state)
        out = np.zeros((len(actions), SCREEN_SIZE, SCREEN_SIZE), dtype=np.uint8)
        grey = np.zeros((2, *RAW_SHAPE), dtype=np.uint8)
        for t, action in enumerate(np.asarray(actions).reshape(-1)):
            out[t] = self._preprocess(self._act(int(action), self.ale.getScreenGrayscale, grey)[2])
        return out

    # ------------------------------------------------------------------------------------- helpers
    def _act(self, action: int, screen: Any, buffers: np.ndarray) -> tuple[float, bool, np.ndarray]:
        """Repeat ``action`` for ``frame_skip`` frames (fewer if the game ends): (reward, game over, the
        max-pool of the last two screens read by ``screen`` into ``buffers``)."""
        ale_action = self.action_set[action]
        reward, game_over, read = 0.0, False, 0
        for k in range(self.frame_skip):
            reward += self.ale.act(ale_action)
            game_over = self.ale.game_over(with_truncation=False)
            if k >= self.frame_skip - 2 or game_over:
                screen(buffers[k % 2])
                read += 1
            if game_over:
                break
        return reward, game_over, (buffers.max(axis=0) if read == 2 else buffers[k % 2].copy())

    def _preprocess(self, grey: np.ndarray) -> np.ndarray:
        small = cv2.resize(grey, (SCREEN_SIZE, SCREEN_SIZE), interpolation=cv2.INTER_AREA)
        small[self._obs_mask] = 0
        return small


def make_atari_task(
    game: str, *, end_penalty: float | None = None, render_mode: str | None = None, **kwargs: Any
) -> gym.Env[np.ndarray, int]:
    """Builds one App. A.2 variant (Christiano et al. 2017); the registered ids' entry point.

    Args:
        game: a key of :data:`GAMES`, e.g. ``"Pong"``.
        end_penalty: overrides the game's episode-end penalty (see :class:`AtariGame`).
        render_mode: ``"rgb_array"`` for :meth:`AtariPreferenceEnv.render`.
        **kwargs: passed to :class:`AtariPreferenceEnv` (``noop_max``, ``frame_skip``, ``frame_stack``).
    """
    if game not in GAMES:
        raise ValueError(f"unknown Atari game {game!r}; choose one of {sorted(GAMES)}")
    spec = GAMES[game]
    base = AtariEnv(
        game=spec.rom,
        obs_type="grayscale",
        frameskip=1,
        repeat_action_probability=0.0,
        full_action_space=False,
        max_num_frames_per_episode=MAX_EPISODE_FRAMES,
        render_mode=render_mode,
    )
    penalty = spec.end_penalty if end_penalty is None else end_penalty
    return AtariPreferenceEnv(base, blackout=spec.blackout, end_penalty=penalty, **kwargs)


def register_atari_tasks() -> None:
    """Registers every id of :data:`ATARI_TASKS` with gymnasium; calling it again does nothing."""
    for game in GAMES.values():
        if game.id not in gym.registry:
            gym.register(id=game.id, entry_point=f"{__name__}:make_atari_task", kwargs={"game": game.name})
