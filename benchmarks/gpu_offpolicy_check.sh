# Device check (issue 11): does the off-policy path (SAC with PEBBLE's relabelling and state-entropy
# exploration, QPA, replay-buffer checkpoints) work with --device cuda, and what does a SAC step cost on the
# GPU against one CPU core of the same machine? Set-up: benchmarks/device_setup.sh; results go to $OUT.
# Four Hopper SAC runs side by side, each pinned to a core of its own, stopped by SIGINT after $SECS s:
# preferences (200 oracle labels) and the true reward, each on cuda and on cpu. Then the cuda preference run
# is resumed from the checkpoint that SIGINT wrote, for a short while.
set -u
source benchmarks/device_setup.sh
SECS=${SECS:-150}
timeout 240 python3 -m pytest -q -p no:cacheprovider -rs -k "cuda" tests/test_off_policy.py 2>&1 | tail -8
echo "tests done $(( $(date +%s) - t0 ))s"
R=/tmp/runs; mkdir -p $R
arm() {
  name=$1; cpu=$2; shift 2
  s=$(date +%s)
  taskset -c $cpu timeout -s INT -k 60 $SECS python3 -m prefrl train --env prefrl/Hopper-v0 --algo sac \
    --seed 0 --steps 1000000 --threads 1 --run-dir $R/$name --no-progress-bar "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? $(( $(date +%s) - s ))s"
}
arm pref-cuda 2 --teacher oracle --labels 200 --device cuda &
arm pref-cpu 3 --teacher oracle --labels 200 --device cpu &
arm true-cuda 4 --teacher true-reward --device cuda &
arm true-cpu 5 --teacher true-reward --device cpu &
wait
s=$(date +%s)
taskset -c 2 timeout -s INT -k 60 45 python3 -m prefrl resume $R/pref-cuda --no-progress-bar > $OUT/pref-cuda-resume.log 2>&1
echo "resume rc=$? $(( $(date +%s) - s ))s"
python3 - <<'PY'
import json, os
from pathlib import Path
from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.metrics import read_metrics
out = {}
for name in ("pref-cuda", "pref-cpu", "true-cuda", "true-cpu"):
    d = Path("/tmp/runs") / name
    row = {}
    try:
        m = read_metrics(d / "metrics.csv")
        steps, wall = m["step"], m["wall_s"]
        row.update(rows=len(steps), last_step=int(steps[-1]), last_wall_s=float(wall[-1]))
        row["steps_per_s"] = float(steps[-1] / wall[-1])
        half = len(steps) // 2
        if len(steps) >= 4:
            row["steps_per_s_second_half"] = float((steps[-1] - steps[half]) / (wall[-1] - wall[half]))
        os.system(f"cp {d}/metrics.csv $OUT/{name}-metrics.csv")
    except Exception as err:
        row["error"] = repr(err)
    cp = latest_checkpoint(d)
    row["checkpoint_step"] = read_state(cp)["step"] if cp else None
    out[name] = row
print(json.dumps(out, indent=1))
Path(os.environ["OUT"], "gpu_offpolicy_check.json").write_text(json.dumps(out, indent=1))
PY
cp $R/pref-cuda/spec.json $OUT/pref-cuda-spec.json 2>/dev/null
echo "total $(( $(date +%s) - t0 ))s"
