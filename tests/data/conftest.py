"""Fixtures for the format tests."""

import shutil

import pytest


@pytest.fixture
def data_copy(synth, tmp_path):
    """A writable copy of the test module's synthetic data set, to corrupt in one test."""
    return shutil.copytree(synth, tmp_path / "data")
