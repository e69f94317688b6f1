"""Clips of queried segments: rendered from the saved simulator state, encoded as H.264 MP4.

Only segments of queries that were actually asked are rendered (Christiano et al. 2017, App. B: clips of
1-2 s, looping, side by side), by a :class:`ClipWorker` thread of the labeling server, never by the
training process. Each frame is drawn from a stored MuJoCo state (``qpos``/``qvel``) with
:class:`mujoco.Renderer`; segments of envs that cannot be restored carry raw ``frames`` instead, which are
encoded as they are. Clips play at real-time speed: one frame per env step (every k-th step where the env
runs faster than ``max_fps``), at ``1 / (k · dt)`` frames per second. Files are named by the app after
the segment's row id (``clips/<id>.mp4``), never after anything a request says.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio_ffmpeg
import mujoco
import numpy as np

from prefrl.label_store import LabelStore
from prefrl.segments import Segment

from .tasks import env_id_of

log = logging.getLogger(__name__)

CLIP_DIR = "clips"
DEFAULT_SIZE = (320, 240)
MAX_FPS = 50.0
FRAMES_FPS = 15.0  # for raw frames when the env says nothing about its speed


def clip_name(segment_id: int) -> str:
    """The file name of a segment's clip, relative to the store's folder: ``clips/<id>.mp4``."""
    return f"{CLIP_DIR}/{int(segment_id):08d}.mp4"


def encode_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    """Write RGB ``frames (n, H, W, 3)`` as browser-playable H.264 (yuv420p, faststart) MP4, atomically.

    ``H`` and ``W`` must be even (4:2:0 chroma subsampling).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (n >= 1, H, W, 3); got {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"clip width and height must be even for H.264; got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.mp4")
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-preset", "veryfast", "-crf", "26", "-movflags", "+faststart", "-an"],
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
    finally:
        writer.close()
    os.replace(tmp, path)


def _camera(model: mujoco.MjModel, config: dict[str, Any] | None) -> mujoco.MjvCamera:
    """A camera from a gymnasium ``default_camera_config``: tracking when it names a body, else free."""
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    config = dict(config or {})
    body = config.pop("trackbodyid", None)
    if body is not None and int(body) > 0:
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        cam.trackbodyid = int(body)
    for key in ("distance", "elevation", "azimuth"):
        if key in config:
            setattr(cam, key, float(config[key]))
    if "lookat" in config and cam.type == mujoco.mjtCamera.mjCAMERA_FREE:
        cam.lookat[:] = np.asarray(config["lookat"], dtype=np.float64)
    return cam


class SegmentRenderer:
    """Renders segments of one MuJoCo env from their saved states (``qpos`` then ``qvel`` per step).

    Holds an OpenGL context: create and use it in a single thread.

    Args:
        env_id: the gymnasium id the segments were recorded in (e.g. ``prefrl/HopperBackflip-v0``).
        size: ``(width, height)`` of the clip in pixels, both even.
        max_fps: render every k-th step where the env runs faster than this (clips stay real-time).
    """

    def __init__(
        self, env_id: str, *, size: tuple[int, int] = DEFAULT_SIZE, max_fps: float = MAX_FPS
    ) -> None:
        import prefrl.envs  # noqa: F401  (registers the prefrl/... ids)

        self.env = gym.make(env_id)
        base = self.env.unwrapped
        model = getattr(base, "model", None)
        if not isinstance(model, mujoco.MjModel):
            self.env.close()
            raise TypeError(f"{env_id} is not a MuJoCo env: its clips need raw frames in the segments")
        self.model = model
        self.data = mujoco.MjData(model)
        self.dt = float(getattr(base, "dt", 1.0 / self.env.metadata.get("render_fps", 30)))
        self.stride = max(1, math.ceil(1.0 / (self.dt * max_fps)))
        self.fps = 1.0 / (self.stride * self.dt)
        width, height = size
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, width)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, height)
        # Without a GPU (software OpenGL) multisampling, shadows and reflections cost ~15x the frame rate.
        self.model.vis.quality.offsamples = 0
        self.renderer = mujoco.Renderer(model, height=height, width=width)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            self.renderer.scene.flags[flag] = 0
        renderer_config = getattr(getattr(base, "mujoco_renderer", None), "default_cam_config", None)
        self.camera = _camera(model, renderer_config)
        self.instructions: str | None = getattr(base, "instructions", None)

    def frames(self, states: np.ndarray) -> np.ndarray:
        """RGB frames ``(ceil(length / stride), H, W, 3)`` for states ``(length, nq + nv)``."""
        nq, nv = self.model.nq, self.model.nv
        if states.ndim != 2 or states.shape[1] != nq + nv:
            raise ValueError(f"states must have shape (length, nq + nv = {nq + nv}); got {states.shape}")
        out = []
        for state in states[:: self.stride]:
            self.data.qpos[:] = state[:nq]
            self.data.qvel[:] = state[nq:]
            mujoco.mj_forward(self.model, self.data)
            self.renderer.update_scene(self.data, camera=self.camera)
            out.append(self.renderer.render().copy())
        return np.stack(out)

    def render(self, segment: Segment, path: Path) -> None:
        """Encode the clip of ``segment`` to ``path``: from its states, else from its raw frames."""
        if segment.states is not None:
            encode_mp4(self.frames(segment.states), path, self.fps)
        elif segment.frames is not None:
            encode_mp4(segment.frames, path, 1.0 / self.dt)
        else:
            raise ValueError("the segment has neither simulator states nor frames; no clip can be made")

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def render_frames_only(segment: Segment, path: Path, fps: float = FRAMES_FPS) -> None:
    """Encode a segment's raw frames (for envs whose simulator cannot be restored)."""
    if segment.frames is None:
        raise ValueError("the segment has no frames and the run names no MuJoCo env to render its states")
    encode_mp4(segment.frames, path, fps)


class ClipWorker(threading.Thread):
    """Background thread of the labeling server: renders the clips of every unanswered query, oldest first.

    Polls the store for segments of pending queries without a clip, renders each to ``clips/<id>.mp4`` next to
    the database and records it (or the reason it failed) with :meth:`LabelStore.set_clip`. Queries whose two
    clips are ready can then be handed out, so labelers see pairs in order while the worker keeps ahead.

    Args:
        store_path: the run's ``labels.sqlite``.
        size: clip ``(width, height)``.
        poll_s: seconds between looks at an idle queue.
    """

    def __init__(
        self, store_path: Path, *, size: tuple[int, int] = DEFAULT_SIZE, poll_s: float = 0.25
    ) -> None:
        super().__init__(name="prefrl-clips", daemon=True)
        self.store_path = Path(store_path)
        self.size = size
        self.poll_s = poll_s
        self.stop_event = threading.Event()
        self.rendered = 0
        self.error: str | None = None  # the last failure, shown on the page
        self._renderer: SegmentRenderer | None = None
        self._renderer_env: str | None = None
        self._renderer_error: Exception | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        store = LabelStore(self.store_path)
        try:
            while not self.stop_event.is_set():
                todo = store.segments_without_clips(limit=8)
                if not todo:
                    self.stop_event.wait(self.poll_s)
                    continue
                for segment_id in todo:
                    if self.stop_event.is_set():
                        break
                    self._render_one(store, segment_id)
        finally:
            if self._renderer is not None:
                self._renderer.close()
            store.close()

    def _render_one(self, store: LabelStore, segment_id: int) -> None:
        name = clip_name(segment_id)
        try:
            segment = store.segment(segment_id)
            env_id = env_id_of(store, self.store_path.parent)
            renderer = self._renderer_for(env_id) if segment.states is not None and env_id else None
            if renderer is not None:
                renderer.render(segment, self.store_path.parent / name)
            else:
                render_frames_only(
                    segment, self.store_path.parent / name, float(store.get_meta("fps") or FRAMES_FPS)
                )
            store.set_clip(segment_id, name)
            self.rendered += 1
        except Exception as err:  # noqa: BLE001  (one bad segment must not stop the worker)
            self.error = f"segment {segment_id}: {type(err).__name__}: {err}"
            log.warning("cannot render the clip of %s", self.error)
            store.set_clip(segment_id, None, error=self.error)

    def _renderer_for(self, env_id: str) -> SegmentRenderer | None:
        """The renderer for ``env_id``, or None when it is not a MuJoCo env (its segments carry frames)."""
        if self._renderer_env != env_id:
            if self._renderer is not None:
                self._renderer.close()
            self._renderer, self._renderer_env, self._renderer_error = None, env_id, None
            try:
                self._renderer = SegmentRenderer(env_id, size=self.size)
            except TypeError:
                pass  # not a MuJoCo env: its segments carry frames
            except Exception as err:  # noqa: BLE001  (kept, and reported for every clip it prevents)
                self._renderer_error = RuntimeError(
                    f"cannot render {env_id} ({type(err).__name__}: {err}); without a display start "
                    "`prefrl label` with MUJOCO_GL=egl (or osmesa) set"
                )
        if self._renderer_error is not None:
            raise self._renderer_error
        return self._renderer
