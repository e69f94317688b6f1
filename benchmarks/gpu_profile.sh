# Device profile (issue 10): where does the Pong preference run's time go on a GPU machine? gpu_check.sh found
# A2C from preferences at 0.69 of the true reward's RL steps/s there (0.86 on the 2-core CPU). Runs, one after
# the other on the whole machine: the true-reward arm, the preference arm with asynchronous updates (sampled
# by py-spy, every thread, idle waits included, without pausing it; and nvidia-smi's utilisation), and the
# preference arm with synchronous updates. Set-up: benchmarks/device_setup.sh. Results go to $OUT;
# `python -m benchmarks.gpu_profile DIR` turns them into benchmarks/results/gpu_profile.json.
set -u
source benchmarks/device_setup.sh
R=/tmp/runs; mkdir -p $R
PONG="--env prefrl/PongNoScore-v0 --algo a2c --device cuda --steps 2000000 --no-progress-bar"
ORACLE="--teacher oracle --labels 3300 --pretrain-epochs 10"
run() { name=$1; secs=$2; shift 2; s=$(date +%s); timeout -s INT -k 30 $secs python3 -m prefrl train $PONG "$@" --run-dir $R/$name > $OUT/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s"; }
run pong-true 100 --teacher true-reward
nvidia-smi dmon -s u -d 2 > $OUT/dmon.txt 2>&1 & dmon=$!
run pong-oracle 180 $ORACLE & oracle=$!
sleep 5; pid=$(pgrep -f "^python3 -m prefrl train.*pong-oracle" | head -1)
py-spy record --pid $pid --nonblocking --threads --idle --rate 20 --format raw --output $OUT/pyspy.txt 2>&1 | tail -3
wait $oracle; kill $dmon 2>/dev/null
run pong-oracle-sync 120 $ORACLE --reward-updates sync
for name in pong-true pong-oracle pong-oracle-sync; do cp $R/$name/metrics.csv $OUT/$name-metrics.csv 2>/dev/null; done
echo "total $(( $(date +%s) - t0 ))s"
