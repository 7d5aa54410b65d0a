"""Fixtures for the format tests."""

import shutil

import pytest


@pytest.fixture
def data_copy(synth, tmp_path):
    """A writable copy of the test module's synthetic data set, to corrupt in one test."""
    return shutil.copytree(synth, tmp_path / "data")


def pytest_terminal_summary(terminalreporter):
    """How many fuzz cases each reader ran (tests/data/test_fuzz_readers.py), and how they ended."""
    import sys

    module = next((m for name, m in list(sys.modules.items()) if name.endswith("test_fuzz_readers")), None)
    cases = getattr(module, "CASES", None)
    if not cases:
        return
    terminalreporter.section("fuzzed readers: cases per format")
    for fmt in sorted({f for f, _ in cases}):
        outcomes = {o: n for (f, o), n in cases.items() if f == fmt}
        detail = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
        terminalreporter.write_line(f"{fmt}: {sum(outcomes.values())} cases ({detail})")
    terminalreporter.write_line(f"all formats: {sum(cases.values())} cases")
