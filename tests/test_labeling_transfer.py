import json

import numpy as np

from prefrl.label_store import LabelStore
from prefrl.labeling_gui.transfer import copy_pairs
from prefrl.segments import Segment


def test_offline_pairs_of_a_run_without_env_meta_take_the_env_from_its_config(tmp_path):
    source_dir = tmp_path / "old-run"
    seg = Segment(np.zeros((3, 11), np.float32), np.zeros((3, 3), np.float32), np.zeros(3), np.zeros((3, 12)))
    with LabelStore(source_dir / "labels.sqlite") as source:
        source.add_queries([(seg, seg)])
        assert source.get_meta("env_id") is None  # as written before the store recorded it
    (source_dir / "config.json").write_text(json.dumps({"env": "prefrl/Hopper-v0"}))
    with LabelStore(tmp_path / "offline" / "labels.sqlite") as copy:
        assert copy_pairs(source_dir / "labels.sqlite", copy) == 1
        assert copy.get_meta("env_id") == "prefrl/Hopper-v0"
