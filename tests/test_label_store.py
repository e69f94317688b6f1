import multiprocessing as mp

import numpy as np
import pytest

from prefrl.label_store import LabelStore, StoreTeacher
from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference


def seg(value, with_state=True):
    return Segment(
        np.full((4, 3), value, np.float32),
        np.zeros((4, 1), np.float32),
        np.full(4, value, np.float32),
        states=np.full((4, 5), value, np.float64) if with_state else None,
    )


def test_round_trip_queries_segments_and_answers(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as store:
        q1, q2 = store.add_queries([(seg(1), seg(2)), (seg(3), seg(4, with_state=False))])
        assert store.pending_query_ids() == [q1.query_id, q2.query_id]
        store.add_answers([Answer(q1.query_id, Preference.RIGHT, "ann", 3.5)])
        assert store.pending_query_ids() == [q2.query_id]
        ((query, pref),) = list(store.answered_pairs())
        assert pref is Preference.RIGHT and query.right.true_return == 8.0
        np.testing.assert_array_equal(query.left.states, seg(1).states)
        assert store.query(q2.query_id).right.states is None


def test_bad_answers_change_nothing(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as store:
        (q,) = store.add_queries([(seg(1), seg(2))])
        store.add_answers([Answer(q.query_id, Preference.LEFT)])
        with pytest.raises(ValueError, match="already answered"):
            store.add_answers([Answer(q.query_id, Preference.RIGHT)])
        with pytest.raises(KeyError):
            store.add_answers([Answer(999, Preference.LEFT)])
        assert store.num_answers() == 1


def _answer_from_other_process(path, query_id):
    with LabelStore(path) as store:
        store.add_answers([Answer(query_id, Preference.EQUAL, "remote", 1.0)])


def test_store_teacher_sees_answers_from_another_process(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        teacher = StoreTeacher(store)
        (q,) = store.add_queries([(seg(1), seg(2))])
        assert teacher.pending() == 1 and teacher.poll() == []
        p = mp.get_context("spawn").Process(target=_answer_from_other_process, args=(path, q.query_id))
        p.start()
        p.join(30)
        (answer,) = teacher.poll()
        assert answer.preference is Preference.EQUAL and answer.labeler == "remote"
        assert teacher.pending() == 0
