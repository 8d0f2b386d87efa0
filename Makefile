# make demo: the closed-loop simulation (no hardware, no ROS install needed)
# make test: every test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export PYTHONUNBUFFERED := 1

.PHONY: test demo venv venv-train clean

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

# Training/test venv: adds torch (pinned, installs from local files here), timm, onnx, scipy.
$(VENV)/.train: $(VENV)/.runtime
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $@

venv: $(VENV)/.runtime
venv-train: $(VENV)/.train

test: $(VENV)/.train
	$(PY) -m pytest -q test

demo: $(VENV)/.runtime
	$(VENV)/bin/celegans-autofocus synth demo_out/data --plates 2 --stacks-per-plate 1 --range-steps 60 --step-every 4 --seed 0
	$(VENV)/bin/celegans-autofocus label demo_out/data
	$(VENV)/bin/celegans-autofocus crop demo_out/data --fov 500
	$(VENV)/bin/celegans-autofocus label demo_out/data

clean:
	rm -rf demo_out build *.egg-info
