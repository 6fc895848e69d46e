"""Shared fixtures of the deployment tests: where the binaries and the chart are."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "erp-toolkit"
DEPLOY = ROOT / "deploy"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


@pytest.fixture(scope="session")
def binary() -> str:
    """The debug build with default features (it has `standalone`)."""
    path = Path(os.environ.get("ERP_TOOLKIT_BIN", target_dir() / "debug" / "erp-toolkit"))
    if not path.is_file():
        pytest.fail(f"build first: cargo build ({path} missing)")
    return str(path)


@pytest.fixture(scope="session")
def production_binary() -> str:
    """The build of the production image: `--no-default-features` (no embedded broker)."""
    path = os.environ.get("ERP_TOOLKIT_PRODUCTION_BIN")
    if not path or not Path(path).is_file():
        pytest.fail(
            "ERP_TOOLKIT_PRODUCTION_BIN must name a build made with "
            "`cargo build --no-default-features --bin erp-toolkit` (scripts/deploy-test.sh does this)"
        )
    return path


def chart_tool(name: str):
    """A module of helm/erp-toolkit/tests/ (the chart's generators), imported by path."""
    spec = importlib.util.spec_from_file_location(name, CHART / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stop(process: subprocess.Popen | None, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
