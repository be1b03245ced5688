# make test  — create .venv if missing, install aetk with its test extras (building the
#              native extension, with CUDA kernels when nvcc is present), run pytest.
# make demo  — the main jobs end to end: kernels benchmark, train/eval/sample/export a conv
#              autoencoder, train a small denoiser and compare it with the shipped one.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The constraints pin torch to the CPU wheel on CPU machines (no CUDA wheels pulled).
CONSTRAINTS := .ci/constraints.txt
BUILD_DEPS := scikit-build-core pybind11 cmake ninja

.PHONY: install data dev test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q -c $(CONSTRAINTS) $(BUILD_DEPS)
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation ".[test]"

# Work on the Python code without reinstalling: copy the built extension into the source
# tree, then run `.venv/bin/python -m pytest tests` from the repository root (aetk.cli is
# found in cli/ there: see aetk/_source_cli.py).
dev: install
	cp $$($(PY) -c "import glob, sysconfig; print(glob.glob(sysconfig.get_paths()['platlib'] + '/aetk/_C*.so')[0])") aetk/

# Fashion-MNIST's real files come from Debian (dataset-fashion-mnist, offline); installed here
# when apt can (as root), else the one test that reads them says it skipped and why.
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@test -f $(FASHION) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "note: dataset-fashion-mnist is not installed (apt install dataset-fashion-mnist); its test will skip"

test: install data
	$(VENV)/bin/pytest tests

DEMO_RUN ?= runs/demo-conv
DEMO_DN ?= runs/demo-denoise
AETK := $(VENV)/bin/aetk
demo: install
	$(PY) benchmarks/bench_ops.py --quick
	rm -rf $(DEMO_RUN) $(DEMO_DN)
	# train, evaluate and sample a conv autoencoder, then export it to validated ONNX
	$(AETK) train --model conv --data digits --epochs 30 --run-dir $(DEMO_RUN) \
		model.channels=[16,32] model.code_size=16 train.lr=3e-3 train.progress=false
	$(AETK) eval $(DEMO_RUN)
	$(AETK) sample $(DEMO_RUN) --fitted-codes
	$(AETK) export $(DEMO_RUN) -o $(DEMO_RUN)-onnx --int8 --triton $(DEMO_RUN)-triton
	# denoise: a small denoiser trained here (minutes) against the shipped one, sigma 25
	$(PY) tools/denoise_patches.py $(DEMO_DN)/patches.npz --stride 64
	$(AETK) train --model resconv --data $(DEMO_DN)/patches.npz --epochs 2 --run-dir $(DEMO_DN)/run \
		model.features=16 model.depth=4 train.batch_size=16 train.lr=2e-3 train.progress=false
	$(AETK) export $(DEMO_DN)/run -o $(DEMO_DN)/onnx
	$(PY) tools/denoise_demo.py noisy $(DEMO_DN) --sigma 25
	$(AETK) denoise $(DEMO_DN)/noisy -o $(DEMO_DN)/small --model $(DEMO_DN)/onnx
	$(AETK) denoise $(DEMO_DN)/noisy -o $(DEMO_DN)/shipped
	$(PY) tools/denoise_demo.py score $(DEMO_DN) noisy small shipped

bench: install
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf build dist
