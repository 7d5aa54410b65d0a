# The two commands of the README. Both install first (idempotent, from requirements.lock).
.PHONY: install demo test test-fast test-cluster test-bench bench lock

install:
	@bash scripts/install.sh

demo: install
	RAY_AUTH_MODE=disabled .venv/bin/facelab demo

# The whole suite (CI runs this): at most 25 minutes on a 2-core machine; prints the 20 slowest steps.
test: install
	@bash scripts/install_browser.sh
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q --durations=20 --ignore=tests/cluster --ignore=tests/bench

# Unit, format and declaration tests: no training, no Serve, one embedded Ray; under 5 minutes.
test-fast: install
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q -m "not slow" --durations=10 --ignore=tests/cluster --ignore=tests/bench

# The tests that start and kill Ray clusters of their own (tests/cluster): `ray start` clusters on this
# machine, the version-skew job submissions, a worker node lost in the middle of a sweep, a training
# run, a submission and Serve, and a sweep and a submission whose driver is SIGKILLed with its Ray.
test-cluster: install
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q tests/cluster --durations=10

# Every benchmark script still runs: each at --size tiny, nothing timed (tests/bench).
test-bench: install
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q tests/bench --durations=10

# Every benchmark under bench/ (facelab against its baseline, interleaved, ratios): at most 20 minutes here.
bench: install
	RAY_AUTH_MODE=disabled .venv/bin/python bench/run_all.py

# Re-pin after changing dependencies (then commit requirements.lock).
lock:
	.venv/bin/python -m pip freeze --exclude-editable | grep -v '^facelab' | sed 's/^torch==/torch===/' > requirements.lock
