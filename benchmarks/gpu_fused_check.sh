# Device check (issue 10) after the fused per-step CNN reward (prefrl.cnn_reward.FusedCNNEnsemble): its tests
# on CUDA, one call's time member by member against fused (benchmarks/reward_step_speed.py), and the Pong
# pair of gpu_profile.sh again, shorter (true reward 85 s, preferences 125 s, one after the other on the
# whole machine). Set-up: benchmarks/device_setup.sh; results go to $OUT for
# `python -m benchmarks.gpu_profile DIR --out benchmarks/results/gpu_profile_fused.json`.
set -u
source benchmarks/device_setup.sh
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs tests/test_atari_reward.py -k "fused or cuda" 2>&1 | tail -3
python3 -m benchmarks.reward_step_speed --calls 20 --repeats 3 --out $OUT/reward_step_speed.json
R=/tmp/runs; mkdir -p $R
PONG="--env prefrl/PongNoScore-v0 --algo a2c --device cuda --steps 2000000 --no-progress-bar"
run() { name=$1; secs=$2; shift 2; s=$(date +%s); timeout -s INT -k 20 $secs python3 -m prefrl train $PONG "$@" --run-dir $R/$name > $OUT/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s"; cp $R/$name/metrics.csv $OUT/$name-metrics.csv; }
run pong-true 85 --teacher true-reward
run pong-oracle 125 --teacher oracle --labels 3300 --pretrain-epochs 10
echo "total $(( $(date +%s) - t0 ))s"
