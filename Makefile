# prefrl: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch pinned to the local CPU wheel on every pip call (an unpinned torch pulls GBs of CUDA packages).
PIP := $(PY) -m pip install -c constraints.txt
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: install demo test lint type bench-overhead bench-mujoco bench-mujoco-ablations bench-mujoco-table bench-wall-time bench-backflip bench-teachers-online bench-label-sources bench-atari bench-atari-memory bench-peers clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed

# A short real run: Hopper (fixed-horizon variant) from 300 oracle labels, beside the same PPO on the
# true reward; both run at once (one per core), then a plot. About 5 minutes on 2 cores.
DEMO_STEPS ?= 200000
demo: install
	rm -rf runs/demo-oracle runs/demo-true-reward
	$(VENV)/bin/prefrl train --env prefrl/Hopper-v0 --algo ppo --teacher true-reward --steps $(DEMO_STEPS) \
		--seed 0 --run-dir runs/demo-true-reward --no-progress-bar > runs-demo-true-reward.log 2>&1 & \
	$(VENV)/bin/prefrl train --env prefrl/Hopper-v0 --algo ppo --teacher oracle --labels 300 --steps $(DEMO_STEPS) \
		--seed 0 --run-dir runs/demo-oracle --reward-update-interval 5000; \
	status=$$?; wait $$!; status2=$$?; cat runs-demo-true-reward.log; rm -f runs-demo-true-reward.log; \
	test $$status -eq 0 -a $$status2 -eq 0
	$(VENV)/bin/prefrl plot runs/demo-oracle runs/demo-true-reward --out runs/demo.png
	@echo "learning curves: runs/demo.png"

test: install
	$(PY) -m pytest -q -n auto --durations=15 tests  # one worker per core (2 here: ~8 min, 13 in series); the slowest listed

lint: install
	$(VENV)/bin/ruff check prefrl envs labeling_gui tests benchmarks
	$(VENV)/bin/ruff format --check prefrl envs labeling_gui tests benchmarks

type: install
	$(VENV)/bin/mypy prefrl envs labeling_gui

bench-overhead: install
	$(PY) -m benchmarks.overhead

bench-mujoco: install
	$(PY) -m benchmarks.mujoco_feedback

bench-mujoco-ablations: install
	$(PY) -m benchmarks.mujoco_ablations

# The paper's Figure 2 on our task variants, as Ray sweeps (tens of core-hours on 2 cores; resumable).
bench-mujoco-table: install
	$(PY) -m benchmarks.mujoco_table

# Whole preference runs against the true reward, one after the other on the same cores.
bench-wall-time: install
	$(PY) -m benchmarks.wall_time

# The Hopper backflip taught by the scripted person through the labeling GUI: SAC with PEBBLE + QPA (its
# 10,000-step window written out: QPA was prefrl's default when this run was recorded), 900 labels, 300k
# steps, the person answering in 3-5 s with clips rendered (75-115 min on one core; 9.4 landed backflips
# per episode on 2026-11-26, 60 min of the person's answering). Resumable.
bench-backflip: install
	$(PY) -m benchmarks.backflip --algo sac --labels 900 --steps 300000 --policy-aligned-steps 10000 \
		--run-dir benchmarks/runs/backflip-sac-900-300k

# Label sources online: the oracle, BPref's noisy teachers (a sweep) and a scripted person answering through
# the labeling GUI, 700 labels on Hopper, 3 seeds, beside the true reward (≈ 8 core-hours; resumable).
bench-teachers-online: install
	$(PY) -m benchmarks.teachers_online

# Label sources offline: the oracle, BPref's teachers and the scripted person on the same 1,000 Hopper pairs
# (agreement, efficiency curves of the reward ensemble); ≈ 15 min on 2 cores, 7 of them the person's pace.
bench-label-sources: install
	$(PY) -m benchmarks.label_sources

# Atari (App. A.2): Pong from 3.3k oracle labels vs the true reward (days on a CPU; resumable: rerun to
# continue, or add --max-minutes N), and the memory of a 3,000-pair preference set.
bench-atari: install
	$(PY) -m benchmarks.atari_pong

bench-atari-memory: install
	$(PY) -m benchmarks.atari_memory

# prefrl beside imitation's preference comparisons on the same Hopper task, each against its own PPO on
# the true reward, and the reward-model epoch of each. Builds imitation's own virtualenv under
# benchmarks/runs/peers (it pins gymnasium 0.29 and SB3 2.2). 3 seeds x 4 arms x 1M steps is many
# core-hours; resumable: rerun to continue, or add --max-minutes N, --steps, --seeds, --cpu.
bench-peers: install
	$(PY) -m benchmarks.peers

clean:
	rm -rf $(VENV) runs
