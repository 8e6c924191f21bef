# The README's two commands: `make demo` (the main job on the synthetic replicas) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
SCALE ?= 1
export HF_HUB_OFFLINE = 1          # nothing is downloaded at run time
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

BROWSER := /usr/bin/chromedriver  # Debian's chromium + driver for the review page's browser tests

.PHONY: venv demo test clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m evaluation.offline   # lighteval must not fetch tinyBenchmarks.pkl at import
	touch $@

demo: venv
	$(PY) -m build replicas --out $(OUT)/raw --scale $(SCALE)
	$(PY) -m build run --raw $(OUT)/raw --out $(OUT) || [ $$? -eq 3 ]   # 3: the replicas plant bad files on purpose
	SPINEBENCH_REPO=$(abspath $(OUT)/spinebench) $(VENV)/bin/lighteval custom random evaluation/baselines.py \
	  "spinebench:mini|0,spinebench:mini_circular|0" --custom-tasks evaluation/spinebench_tasks.py \
	  --output-dir $(OUT)/eval --save-details > $(OUT)/eval.log 2>&1 || (tail -30 $(OUT)/eval.log; false)
	$(PY) -m evaluation report $(OUT)/eval --out $(OUT)/report --dataset $(OUT)/spinebench   # with the build's audit rows

$(BROWSER):
	apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver

test: venv $(BROWSER)
	$(PY) -m pytest -q

clean:
	rm -rf out
