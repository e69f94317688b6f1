"""The labeling server's HTTP API: answers, bad input, auth, clip URLs, concurrent labelers, stats, JSONL."""

from __future__ import annotations

import io
import json
import threading
import warnings
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's TestClient asks for "httpx2"; httpx works the same here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from prefrl.label_store import LabelStore
from prefrl.labeling_gui.cli import LabelArgs, resolve_label_args
from prefrl.labeling_gui.server import ServerSettings, create_app
from prefrl.labeling_gui.transfer import copy_pairs, export_answers, import_answers
from prefrl.teachers import Answer, Preference
from tests.labeling_helpers import fake_segment, fill_fake, serve

TOKEN = "s3cret-token-for-tests"


def make_client(run_dir: Path, **settings: object) -> TestClient:
    settings.setdefault("render_clips", False)
    return TestClient(create_app(ServerSettings(run_dir=run_dir, **settings)))  # type: ignore[arg-type]


def answers_in(run_dir: Path) -> list[dict[str, object]]:
    with LabelStore(run_dir / "labels.sqlite") as store:
        return store.answer_records()


def test_claim_answer_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    ids = fill_fake(tmp_path / "labels.sqlite", 3, rng)
    with make_client(tmp_path) as client:
        claimed = client.post("/api/claim", json={"labeler": "ann", "n": 2}).json()
        assert [p["query_id"] for p in claimed["pairs"]] == ids[:2] and claimed["queue"] == 1
        # Asking again returns the pairs ann holds, not new ones (a reload loses nothing).
        again = client.post("/api/claim", json={"labeler": "ann", "n": 2}).json()
        assert [p["query_id"] for p in again["pairs"]] == ids[:2]
        reply = client.post(
            "/api/answer", json={"query_id": ids[0], "choice": "left", "labeler": "ann", "seconds": 2.5}
        )
        assert reply.status_code == 200 and reply.json()["count"] == 1
        info = client.get("/api/info").json()
        assert info["answers"] == 1 and info["instructions"]
    (record,) = answers_in(tmp_path)
    assert (record["query_id"], record["choice"], record["labeler"], record["seconds"]) == (
        ids[0],
        "left",
        "ann",
        2.5,
    )
    assert record["created"] > 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query_id": 999, "choice": "left", "labeler": "ann"}, 404, "no pair 999"),
        ({"query_id": "FIRST", "choice": "up", "labeler": "ann"}, 422, "unknown preference 'up'"),
        ({"query_id": "FIRST", "choice": 7, "labeler": "ann"}, 422, "expected one of"),
        ({"query_id": "ANSWERED", "choice": "right", "labeler": "ann"}, 409, "already answered"),
        ({"query_id": "HELD", "choice": "right", "labeler": "ann"}, 409, "held by another labeler"),
        ({"query_id": "abc", "choice": "left", "labeler": "ann"}, 422, "malformed request: query_id"),
        ({"choice": "left", "labeler": "ann"}, 422, "query_id: Field required"),
        ({"query_id": "FIRST", "choice": "left", "labeler": "ann", "extra": 1}, 422, "malformed request"),
        ({"query_id": "FIRST", "choice": "left", "labeler": "ann", "seconds": -1}, 422, "seconds"),
        ({"query_id": "FIRST", "choice": "left", "labeler": "../etc"}, 422, "labeler must be"),
        ("not json at all", 422, "malformed request"),
        ([1, 2, 3], 422, "malformed request"),
    ],
)
def test_bad_answers_get_4xx_and_change_nothing(
    tmp_path: Path, rng: np.random.Generator, body: object, status: int, message: str
) -> None:
    held, first, answered = fill_fake(tmp_path / "labels.sqlite", 3, rng)
    with LabelStore(tmp_path / "labels.sqlite") as store:
        assert store.claim_queries("bob", 1, require_clips=False) == [held]  # the oldest pair
        store.add_answers([Answer(answered, Preference.LEFT, "bob", 1.0)])
    if isinstance(body, dict) and isinstance(body.get("query_id"), str):
        body = {
            **body,
            "query_id": {"FIRST": first, "ANSWERED": answered, "HELD": held}.get(
                body["query_id"], body["query_id"]
            ),
        }
    before = answers_in(tmp_path)
    with make_client(tmp_path) as client:
        if isinstance(body, str):
            reply = client.post("/api/answer", content=body, headers={"Content-Type": "application/json"})
        else:
            reply = client.post("/api/answer", json=body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["detail"]
    assert answers_in(tmp_path) == before


def test_token_required_on_every_request(tmp_path: Path, rng: np.random.Generator) -> None:
    (qid,) = fill_fake(tmp_path / "labels.sqlite", 1, rng)
    with make_client(tmp_path, token=TOKEN) as client:
        for method, path in [
            ("GET", "/"),
            ("GET", "/stats"),
            ("GET", "/api/info"),
            ("GET", "/api/stats"),
            ("GET", "/static/app.js"),
            ("GET", "/clips/1.mp4"),
            ("POST", "/api/claim"),
            ("POST", "/api/answer"),
        ]:
            reply = client.request(method, path, json={"query_id": qid, "choice": "left", "labeler": "x"})
            assert reply.status_code == 401, path
            assert "token" in reply.json()["detail"]
        assert client.get("/api/info", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        page = client.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and "Which clip is better?" in page.text
        # The page's own requests (and its <video> loads) then carry the token as a cookie.
        reply = client.post("/api/answer", json={"query_id": qid, "choice": "left", "labeler": "x"})
        assert reply.status_code == 200
    assert len(answers_in(tmp_path)) == 1


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    assert resolve_label_args(LabelArgs(run_dir=tmp_path))[1] is None
    assert resolve_label_args(LabelArgs(run_dir=tmp_path, host="::1"))[1] is None
    token = resolve_label_args(LabelArgs(run_dir=tmp_path, host="0.0.0.0"))[1]
    assert token is not None and len(token) >= 16
    assert resolve_label_args(LabelArgs(run_dir=tmp_path, host="0.0.0.0", token=TOKEN))[1] == TOKEN


def test_clip_urls_cannot_traverse(tmp_path: Path, rng: np.random.Generator) -> None:
    (qid,) = fill_fake(tmp_path / "labels.sqlite", 1, rng)
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "00000001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (tmp_path / "secret.txt").write_text("secret")
    with LabelStore(tmp_path / "labels.sqlite") as store:
        left_id, right_id = store.query_info(qid)["left_id"], store.query_info(qid)["right_id"]
        store.set_clip(left_id, "clips/00000001.mp4")
        store.set_clip(right_id, "../secret.txt")  # even a bad path in the database is not served
    with make_client(tmp_path) as client:
        ok = client.get(f"/clips/{left_id}.mp4")
        assert ok.status_code == 200 and ok.headers["content-type"] == "video/mp4"
        for path in [
            f"/clips/{right_id}.mp4",
            "/clips/..%2Flabels.sqlite",
            "/clips/%2e%2e%2fsecret.txt",
            "/clips/../labels.sqlite",
            "/clips/1.mp4/../../secret.txt",
            "/clips/99.mp4",
            "/clips/x",
            "/static/..%2Fserver.py",
            "/static/%2e%2e%2fserver.py",
            "/static/index.html.bak",
        ]:
            reply = client.get(path)
            assert reply.status_code == 404, path
            assert b"secret" not in reply.content and b"SQLite" not in reply.content


def test_twenty_concurrent_labelers_get_disjoint_pairs_and_lose_no_answer(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    ids = fill_fake(tmp_path / "labels.sqlite", 200, rng)
    claimed: dict[str, set[int]] = {}
    answered: dict[str, list[int]] = {}
    errors: list[str] = []
    app = create_app(ServerSettings(run_dir=tmp_path, render_clips=False))

    def labeler(name: str, url: str) -> None:
        seen, done = set(), []
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                reply = client.post("/api/claim", json={"labeler": name, "n": 2})
                if reply.status_code != 200:
                    errors.append(f"{name} claim {reply.status_code}: {reply.text}")
                    return
                pairs = reply.json()["pairs"]
                if not pairs:
                    break
                seen.update(p["query_id"] for p in pairs)
                choice = ["left", "right", "equal", "skip"][pairs[0]["query_id"] % 4]
                body = {"query_id": pairs[0]["query_id"], "choice": choice, "labeler": name, "seconds": 1.0}
                reply = client.post("/api/answer", json=body)
                if reply.status_code != 200:
                    errors.append(f"{name} answer {reply.status_code}: {reply.text}")
                    return
                done.append(pairs[0]["query_id"])
        claimed[name], answered[name] = seen, done

    with serve(app) as url:
        threads = [threading.Thread(target=labeler, args=(f"labeler-{i}", url)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    assert len(claimed) == 20 and sum(len(v) for v in answered.values()) == 200
    every_claim = Counter(q for ids_ in claimed.values() for q in ids_)
    assert max(every_claim.values()) == 1  # no pair handed to two labelers
    records = answers_in(tmp_path)
    assert sorted(r["query_id"] for r in records) == ids  # every answer committed, each pair once
    by_labeler = {name: sorted(v) for name, v in answered.items()}
    assert all(
        sorted(r["query_id"] for r in records if r["labeler"] == n) == v for n, v in by_labeler.items()
    )
    assert sum(1 for v in answered.values() if v) > 1  # the work really was shared


def test_repeats_go_to_another_labeler_and_measure_agreement(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "labels.sqlite") as store:
        ids = [q.query_id for q in store.add_queries([(fake_segment(2.0), fake_segment(1.0))] * 4)]
    with make_client(tmp_path, repeat_share=1.0, seed=0) as client:
        for qid in ids:
            (pair,) = client.post("/api/claim", json={"labeler": "ann", "n": 1}).json()["pairs"]
            assert pair["query_id"] == qid
            client.post(
                "/api/answer", json={"query_id": qid, "choice": "left", "labeler": "ann", "seconds": 2}
            )
        # Every answered pair was repeated, but never to ann, who saw the originals.
        assert client.post("/api/claim", json={"labeler": "ann", "n": 2}).json()["pairs"] == []
        for _ in ids:
            (pair,) = client.post("/api/claim", json={"labeler": "bob", "n": 1}).json()["pairs"]
            assert pair["repeat"] and pair["query_id"] not in ids
            choice = "left" if pair["query_id"] % 2 else "right"
            reply = client.post(
                "/api/answer",
                json={"query_id": pair["query_id"], "choice": choice, "labeler": "bob", "seconds": 4},
            )
            assert reply.status_code == 200
        assert client.post("/api/claim", json={"labeler": "bob", "n": 2}).json()["pairs"] == []
        stats = client.get("/api/stats").json()
    assert stats["agreement"] == {"labelers": 0.5, "pairs_compared": 4}
    people = {row["name"]: row for row in stats["labelers"]}
    assert people["ann"]["labels"] == 4 and people["ann"]["median_seconds"] == 2.0
    assert people["ann"]["oracle_agreement"] == 1.0 and people["bob"]["oracle_agreement"] == 0.5
    assert stats["oracle"] == {"agreement": 0.75, "compared": 8}
    assert stats["curve"]["step"] == [] and stats["answers"] == 8


def test_stats_show_the_learning_curve(tmp_path: Path, rng: np.random.Generator) -> None:
    fill_fake(tmp_path / "labels.sqlite", 1, rng)
    (tmp_path / "metrics.csv").write_text(
        "step,wall_s,episodes,true_return,learned_return,labels,val_accuracy\n"
        "1000,1.0,2,10.0,0.1,20,nan\n2000,2.0,2,20.0,0.2,30,0.8\n"
    )
    with make_client(tmp_path) as client:
        stats = client.get("/api/stats").json()
        assert client.get("/stats").status_code == 200
    assert stats["curve"] == {
        "step": [1000.0, 2000.0],
        "true_return": [10.0, 20.0],
        "labels": [20.0, 30.0],
        "val_accuracy": [None, 0.8],
        "fresh_accuracy": [None, None],  # a curve written before the column existed
    }
    assert stats["reward_model_accuracy"] == 0.8 and stats["pending"] == 1
    assert stats["reward_model_fresh_accuracy"] is None


def test_offline_pairs_export_and_import(tmp_path: Path, rng: np.random.Generator) -> None:
    source = tmp_path / "run" / "labels.sqlite"
    ids = fill_fake(source, 5, rng)
    with LabelStore(source) as store:
        store.set_meta("env_id", "prefrl/InvertedPendulum-v0")
        store.add_answers([Answer(ids[0], Preference.RIGHT, "oracle")])  # synthetic answers stay behind
    run_dir, _ = resolve_label_args(LabelArgs(pairs=source))
    assert run_dir == tmp_path / "run" / "labels-offline"
    with LabelStore(run_dir / "labels.sqlite") as store:
        assert store.num_queries() == 5 and store.num_answers() == 0
        assert store.get_meta("env_id") == "prefrl/InvertedPendulum-v0"
        assert copy_pairs(source, store) == 0  # serving the same file again adds nothing
    with make_client(run_dir) as client:
        for pair in client.post("/api/claim", json={"labeler": "ann", "n": 3}).json()["pairs"]:
            client.post(
                "/api/answer", json={"query_id": pair["query_id"], "choice": "equal", "labeler": "ann"}
            )
    buffer = io.StringIO()
    with LabelStore(run_dir / "labels.sqlite") as store:
        assert export_answers(store, buffer) == 3
    lines = buffer.getvalue().splitlines()
    assert {json.loads(line)["labeler"] for line in lines} == {"ann"}

    # Import into the original run: the human answers land on the same pairs (found by content).
    with LabelStore(source) as store:
        with pytest.raises(ValueError, match="line 2"):
            import_answers(store, [lines[0], "{not json", lines[1]])
        assert store.num_answers() == 1  # nothing imported from a file with a bad line
        other = json.dumps({**json.loads(lines[0]), "pair": "0" * 32})
        stats = import_answers(store, [*lines, other])
        assert (stats.imported, stats.already_answered, stats.unknown_pairs) == (2, 1, 1)
        assert Counter(r["labeler"] for r in store.answer_records()) == {"oracle": 1, "ann": 2}
