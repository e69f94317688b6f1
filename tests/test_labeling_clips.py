"""Clips: rendered from saved MuJoCo states in a background thread, real-time H.264 MP4, named by the app."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from prefrl.label_store import LabelStore
from prefrl.labeling_gui.clips import ClipWorker, SegmentRenderer, clip_name, encode_mp4, render_frames_only
from prefrl.segments import Segment
from tests.labeling_helpers import env_segments, fill_env, wait_for


def read_video(path: Path) -> tuple[dict[str, object], int]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta, sum(1 for _ in reader)


def test_clip_is_real_time_h264(tmp_path: Path) -> None:
    (segment,) = env_segments("prefrl/InvertedPendulum-v0", 1, 38)  # 38 steps of 0.04 s: 1.5 s
    renderer = SegmentRenderer("prefrl/InvertedPendulum-v0", size=(160, 120))
    try:
        renderer.render(segment, tmp_path / "clip.mp4")
    finally:
        renderer.close()
    meta, frames = read_video(tmp_path / "clip.mp4")
    assert meta["codec"] == "h264" and meta["size"] == (160, 120)
    assert frames == 38 and meta["fps"] == pytest.approx(25.0)
    assert frames / meta["fps"] == pytest.approx(1.52)  # plays at the env's own speed


def test_fast_envs_are_subsampled_not_sped_up(tmp_path: Path) -> None:
    (segment,) = env_segments("prefrl/Hopper-v0", 1, 60)  # dt 0.008 s: 125 steps per second
    renderer = SegmentRenderer("prefrl/Hopper-v0", size=(96, 72))
    try:
        renderer.render(segment, tmp_path / "clip.mp4")
        assert renderer.stride == 3
    finally:
        renderer.close()
    meta, frames = read_video(tmp_path / "clip.mp4")
    assert frames == 20 and frames / meta["fps"] == pytest.approx(60 * 0.008, rel=1e-3)


def test_raw_frames_are_encoded_when_there_is_no_state(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (12, 84, 84, 3), dtype=np.uint8)
    segment = Segment(np.zeros((12, 4)), np.zeros(12), np.zeros(12, np.float32), frames=frames)
    render_frames_only(segment, tmp_path / "f.mp4", fps=15)
    meta, count = read_video(tmp_path / "f.mp4")
    assert count == 12 and meta["size"] == (84, 84)
    with pytest.raises(ValueError, match="even"):
        encode_mp4(np.zeros((2, 5, 6, 3), np.uint8), tmp_path / "odd.mp4", 10)


def test_worker_renders_only_queried_segments_in_order(tmp_path: Path) -> None:
    store_path = tmp_path / "labels.sqlite"
    q1, q2 = fill_env(store_path, "prefrl/InvertedPendulum-v0", 2, length=10)
    with LabelStore(store_path) as store:
        assert store.claim_queries("ann", 2) == []  # no pair is handed out before its clips exist
    worker = ClipWorker(store_path, size=(64, 48), poll_s=0.05)
    worker.start()
    try:
        with LabelStore(store_path) as store:
            wait_for(lambda: not store.segments_without_clips(), timeout_s=60)
            assert store.claim_queries("ann", 2) == [q1, q2]
            info = store.query_info(q1)
            path, error = store.clip(info["left_id"])
            assert error is None and path == clip_name(info["left_id"]) == f"clips/{info['left_id']:08d}.mp4"
            assert (tmp_path / path).is_file()
    finally:
        worker.stop()
        worker.join(10)
    assert worker.rendered == 4 and worker.error is None
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [f"{i:08d}.mp4" for i in range(1, 5)]
