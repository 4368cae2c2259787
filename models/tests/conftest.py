import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from d2nwg.config import MODELS_DIR  # noqa: E402


def run_stage(cache: Path, *args: str) -> subprocess.CompletedProcess:
    """`python3 -m d2nwg <args>`, the command a person runs, in the cache `cache`; a failure shows its stderr."""
    env = {**os.environ, "D2NWG_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-m", "d2nwg", *args], cwd=MODELS_DIR, env=env, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"`d2nwg {' '.join(args)}` exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def stage():
    """`stage(cache, *args)`: runs a stage's command (`run_stage`)."""
    return run_stage


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A fresh cache holding the tiny datasets (`datasets --config tiny`), built once per session: the
    datasets tests read them, and the tiny pipeline builds the rest of the factory on them."""
    cache = tmp_path_factory.mktemp("cache")
    run_stage(cache, "datasets", "--config", "tiny")
    return cache
