# The two set-up commands in the README are `make quick` and `make test`.
# Each builds .venv from constraints.txt (the lock) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quick test topology-test lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: a quick offline sweep on CPU, embedded Ray and MLflow.
quick: $(STAMP)
	$(BIN)/python sweeps/pdf_grid.py --preset quick

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The production topology on this machine (root): PostgreSQL, S3, MLflow server and a two-node
# Ray cluster in network namespaces, with the smoke sweep sent by `ray job submit` (infra/local/).
topology-test: $(STAMP)
	$(BIN)/python -m pytest tests/test_topology.py -q

# Re-pin the lock from what is installed now.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sort -f > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) mlruns mlflow.db xfer_runs
