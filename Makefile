# The two set-up commands in the README are `make quick` and `make test`.
# Each builds .venv from constraints.txt (the lock) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quick test test-fast topology-test lock clean

# uv installs the lock in 1-1.5 minutes where pip took 4 (benchmarks/RESULTS.md): it
# downloads and unpacks in parallel and links from its cache. --compile-bytecode because
# Python cannot cache bytecode itself where PYTHONDONTWRITEBYTECODE is set (as on CI's
# machines): every process would compile torch, Ray and MLflow as it imports them.
# uv reads its own index settings (UV_INDEX_URL, uv.toml), not pip.conf's.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: a quick offline sweep on CPU, embedded Ray and MLflow.
quick: $(STAMP)
	$(BIN)/python sweeps/pdf_grid.py --preset quick

# Everything, on two pytest-xdist workers (CI's machine has two cores), a module at a time so
# that module-scoped fixtures are built once, the longest files first (LONGEST_FILES in
# tests/conftest.py); the workers share the dataset cache and the smoke sweep. The `serial`
# tests watch state the other worker could touch (HOME, /, the repository): they run after,
# alone.
TEST_WORKERS ?= 2
# The files that hold `serial` tests: the serial run collects only these (collecting all of
# tests/ took 25 of its 42 s on the 2-core machine, 2026-12-03). tests/conftest.py stops any
# run that finds a `serial` test in another file.
SERIAL_TESTS := tests/test_fuzz_cli.py
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 -m "not serial" tests
	$(BIN)/python -m pytest --durations=10 -m serial $(SERIAL_TESTS)

# The inner loop: every test but the real-stack ones (marker `slow`: sweeps, Ray, servers,
# benchmark scripts, tests over ~4 s of CPU) and the fault injection (`faults`), on two workers
# as `make test` runs, the `serial` ones after. On the idle 2-core machine (2026-12-03): 1 min
# 58 s to 2 min 12 s in all, three runs (1,212 tests in 97-109 s on two workers, then 11 in
# 16-17 s), where one process took 3 min 27 s for the same tests. CI runs `make test`.
FAST := not slow and not faults
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "$(FAST) and not serial" tests
	$(BIN)/python -m pytest -q -m "$(FAST) and serial" $(SERIAL_TESTS)

# The production topology on this machine (root): PostgreSQL, S3, MLflow server and a two-node
# Ray cluster in network namespaces, with the smoke sweep sent by `ray job submit` (infra/local/).
topology-test: $(STAMP)
	$(BIN)/python -m pytest tests/test_topology.py -q

# Re-pin the lock from what is installed now.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sort -f > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) mlruns mlflow.db xfer_runs
