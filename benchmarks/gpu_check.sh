# Device check (issue 10): does --device cuda work, with asynchronous reward updates, and what does the Pong pair
# run on a GPU machine? Set-up: benchmarks/device_setup.sh; results go to $OUT.
set -u
source benchmarks/device_setup.sh
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
