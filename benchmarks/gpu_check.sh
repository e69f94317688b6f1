# Device check (issue 10): does --device cuda work, with asynchronous reward updates, and what does the Pong pair
# run on a GPU machine? For a lent machine with no package index: the wheels of what its image lacks (gymnasium,
# ale-py, mujoco, stable-baselines3, sb3-contrib, tyro, fastapi, ...; `pip download --no-deps --only-binary=:all:
# --python-version 3.12`) travel in .whl; results go to $OUT. The in-tree package is used through two links
# (prefrl/envs, prefrl/labeling_gui), as the install's package-dir mapping would.
set -u
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/site/imageio_ffmpeg && echo 'def get_ffmpeg_exe(): raise RuntimeError("no ffmpeg here")' > /tmp/site/imageio_ffmpeg/__init__.py
ln -sfn ../envs prefrl/envs; ln -sfn ../labeling_gui prefrl/labeling_gui
export PYTHONPATH=/tmp/site:$PWD
echo "install $(( $(date +%s) - t0 ))s"; nproc; nvidia-smi -L
python3 -c "import torch, prefrl, ale_py, mujoco, stable_baselines3 as s; print(torch.__version__, torch.cuda.is_available(), s.__version__)" || exit 1
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -k cuda tests/test_reward_updates.py tests/test_trainer.py tests/test_atari_training.py 2>&1 | tail -15
echo "tests done $(( $(date +%s) - t0 ))s"
R=/tmp/runs; mkdir -p $R
run() { name=$1; secs=$2; shift 2; s=$(date +%s); timeout -s INT -k 30 $secs python3 -m prefrl train "$@" --run-dir $R/$name --no-progress-bar > $OUT/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s"; }
run pong-true 110 --env prefrl/PongNoScore-v0 --algo a2c --teacher true-reward --device cuda --steps 2000000
run pong-oracle 170 --env prefrl/PongNoScore-v0 --algo a2c --teacher oracle --labels 3300 --pretrain-epochs 10 --device cuda --steps 2000000
python3 - <<'PY'
import json, os
from pathlib import Path
from benchmarks.wall_time import _rl_steps_per_s
from prefrl.metrics import read_metrics
out = {}
for name in ("pong-true", "pong-oracle"):
    d = Path("/tmp/runs") / name
    row = {"rl_steps_per_s": _rl_steps_per_s(d)}
    if (d / "metrics.csv").exists() and (d / "metrics.csv").stat().st_size > 80:
        m = read_metrics(d / "metrics.csv")
        row.update(steps=int(m["step"][-1]), wall_s=float(m["wall_s"][-1]), rows=len(m["step"]))
        os.system(f"cp {d}/metrics.csv $OUT/{name}-metrics.csv")
    row["config"] = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else None
    out[name] = row
print(json.dumps({k: {kk: v for kk, v in r.items() if kk != "config"} for k, r in out.items()}, indent=1))
Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(out, indent=1))
PY
echo "total $(( $(date +%s) - t0 ))s"
