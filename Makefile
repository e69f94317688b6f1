# prefrl: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch pinned to the local CPU wheel on every pip call (an unpinned torch pulls GBs of CUDA packages).
PIP := $(PY) -m pip install -c constraints.txt
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: install demo test test-fast lint type bench-overhead bench-mujoco bench-backflip bench-atari clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/prefrl train --env prefrl/InvertedPendulum-v0 --algo ppo --teacher oracle \
		--labels 200 --steps 60000 --seed 0 --run-dir runs/demo-oracle --reward-update-interval 4000
	$(VENV)/bin/prefrl train --env prefrl/InvertedPendulum-v0 --algo ppo --teacher true-reward \
		--steps 60000 --seed 0 --run-dir runs/demo-true-reward
	$(VENV)/bin/prefrl plot runs/demo-oracle runs/demo-true-reward --out runs/demo.png
	@echo "learning curves: runs/demo.png"

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check prefrl envs labeling_gui tests benchmarks

type: install
	$(VENV)/bin/mypy prefrl

bench-overhead: install
	$(PY) benchmarks/overhead.py

bench-mujoco: install
	$(PY) benchmarks/mujoco_feedback.py

clean:
	rm -rf $(VENV) runs
