# make test  — create .venv if missing, install aetk with its test extras (building the
#              native extension, with CUDA kernels when nvcc is present), run pytest.
# make demo  — the main job end to end (for now: the fused-kernel benchmark).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The constraints pin torch to the CPU wheel on CPU machines (no CUDA wheels pulled).
CONSTRAINTS := .ci/constraints.txt
BUILD_DEPS := scikit-build-core pybind11 cmake ninja

.PHONY: install dev test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q -c $(CONSTRAINTS) $(BUILD_DEPS)
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation ".[test]"

# Work on the Python code without reinstalling: link the built extension and cli/ into the
# source tree, then run `.venv/bin/python -m pytest tests` from the repository root.
dev: install
	cp $$($(PY) -c "import glob, sysconfig; print(glob.glob(sysconfig.get_paths()['platlib'] + '/aetk/_C*.so')[0])") aetk/
	ln -sfn ../cli aetk/cli

test: install
	$(VENV)/bin/pytest tests

DEMO_RUN ?= runs/demo-conv
demo: install
	$(PY) benchmarks/bench_ops.py --quick
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/aetk train --model conv --data digits --epochs 30 --run-dir $(DEMO_RUN) \
		model.channels=[16,32] model.code_size=16 train.lr=3e-3 train.progress=false
	$(VENV)/bin/aetk eval $(DEMO_RUN)
	$(VENV)/bin/aetk sample $(DEMO_RUN)

bench: install
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf build dist
