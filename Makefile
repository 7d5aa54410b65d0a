# The two commands of the README. Both install first (idempotent, from requirements.lock).
.PHONY: install demo test test-all lock

install:
	@bash scripts/install.sh

demo: install
	RAY_AUTH_MODE=disabled .venv/bin/facelab demo

test: install
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q

# Re-pin after changing dependencies (then commit requirements.lock).
lock:
	.venv/bin/python -m pip freeze --exclude-editable | grep -v '^facelab' | sed 's/^torch==/torch===/' > requirements.lock
