# make demo: the closed-loop simulation (no hardware, no ROS install needed)
# make test: every test; make stress-test: the same with a busy loop on every core
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export PYTHONUNBUFFERED := 1

.PHONY: test stress-test demo bench model venv venv-train clean

# Runtime venv: system rclpy when there is one (a ROS install), else the PyPI wheels.
$(VENV)/.runtime: setup.py requirements-ros.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed")'
	@if $(PYTHON) -c 'import rclpy' 2>/dev/null; then \
	  echo "using the system's rclpy"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi || { echo "python3 -m venv failed: install python3-venv (Debian: apt install python3-venv)"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c 'import rclpy' 2>/dev/null || $(PY) -m pip install -q -r requirements-ros.txt
	$(PY) -m pip install -q -e '.[hardware]'
	touch $@

# Training/test venv: adds torch (pinned, installs from local files here), timm, onnx, scipy; the ament linters
# from PyPI unless the system has them.
$(VENV)/.train: $(VENV)/.runtime requirements-lint.txt
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[train,test]'
	$(PY) -c 'import ament_flake8, ament_pep257' 2>/dev/null || $(PY) -m pip install -q -r requirements-lint.txt
	touch $@

venv: $(VENV)/.runtime
venv-train: $(VENV)/.train

test: $(VENV)/.train
	$(PY) -m pytest -q test

stress-test: $(VENV)/.train
	.ci/with-cpu-hogs $(PY) -m pytest -q test

# The main job: closed-loop autofocus on the simulator with the bundled model, from 150 steps out of focus,
# best plane drifting, a switch to another worm at 15 s; summary, timeline plot and a rosbag2 (MCAP) of the run.
# On the simulated clock: the same figures on any machine (the summary also shows the real-time rate). The bag's
# images are recorded at half scale (320 MB; 1.3 GB as the model saw them, --image-scale 1).
demo: $(VENV)/.runtime
	$(VENV)/bin/celegans-autofocus sim --duration 30 --start-offset 150 --drift 2 --switch 15 -60 --seed 0 \
	  --summary-json demo_out/sim_summary.json --plot demo_out/sim_timeline.png --record demo_out/sim_bag --overwrite \
	  --image-scale 0.5
	$(VENV)/bin/celegans-autofocus bag-eval demo_out/sim_bag --plot demo_out/bag_eval.png

# CNN one-shot, classical search and hybrid autofocus on the same scenarios (~15 min on 2 loaded cores); writes benchmarks/bench*.
bench: $(VENV)/.runtime
	$(VENV)/bin/celegans-autofocus bench --summary-json benchmarks/bench_results.json \
	  --plot benchmarks/bench_plot.png --markdown benchmarks/bench.md

# The bundled model from HEAD: five training stages, each starting from the weights its config's `init` names (the
# previous stage's checkpoint or export); an interrupted stage resumes. Every stage is exported to runs/STAGE.onnx,
# the last one is the bundled model (models/MODEL_CARD.md; hours on one CPU core).
MODEL_STAGES := nll_model nll_random_model default_model mottled_look_model mottled_look_cont_model
model: $(VENV)/.train
	for stage in $(MODEL_STAGES); do \
	  resume=$$( [ -f runs/$$stage/last.pt ] && echo --resume ); \
	  $(VENV)/bin/celegans-autofocus train --config config/$$stage.yaml $$resume || exit 1; \
	  $(VENV)/bin/celegans-autofocus export runs/$$stage/last.pt runs/$$stage.onnx || exit 1; \
	done
	cp runs/$(lastword $(MODEL_STAGES)).onnx models/default.onnx

clean:
	rm -rf demo_out build *.egg-info
