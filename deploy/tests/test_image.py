"""The container image, as far as these machines allow: no base image can be pulled and no
container can run here, so the Dockerfile is linted (hadolint) and the binary the image ships
(`--no-default-features`) is tested itself: its roles, its missing embedded broker, its shared
libraries against what the distroless runtime stage provides, and a role serving its probes.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from conftest import DEPLOY, ROOT, stop

DOCKERFILE = DEPLOY / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")


def test_the_dockerfile_lints_clean():
    done = subprocess.run([HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\nUSER root\n")
    done = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout, done.stdout


def test_the_image_builds_the_production_binary_on_a_distroless_runtime():
    text = DOCKERFILE.read_text()
    rust = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    assert f"ARG RUST_VERSION={rust}" in text, "the build stage must use the workspace's rust-version"
    assert "cargo build --release --locked --no-default-features --bin erp-toolkit" in text
    assert re.search(r"^FROM gcr\.io/distroless/cc-debian\$\{DISTROLESS_DEBIAN\}:nonroot$", text, re.M)
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert "HEALTHCHECK" not in text.replace("no HEALTHCHECK", "")


def test_the_production_binary_has_no_embedded_broker(production_binary):
    top = subprocess.run([production_binary, "--help"], capture_output=True, text=True, check=True).stdout
    commands = set(re.findall(r"^  ([a-z-]+)\s", top.split("Commands:")[1].split("Options:")[0], re.M))
    assert not commands & {"standalone", "broker"}, commands
    assert {"ingest", "processor", "dispatcher"} <= commands, commands
    for role in ("standalone", "broker"):
        done = subprocess.run([production_binary, role], capture_output=True, text=True)
        assert done.returncode != 0 and "unrecognized subcommand" in done.stderr, done.stderr
    for role in sorted(commands & {"ingest", "api", "processor", "dispatcher"}):
        done = subprocess.run([production_binary, role, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "ERP_TOOLKIT_BROKERS" in done.stdout, role


def shared_libraries(binary: str) -> list[str]:
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def test_the_binary_links_only_what_distroless_cc_provides(production_binary):
    """The Dockerfile's own guard (its ldd filter) applied to this build: only zlib is left,
    which the image links statically (LIBZ_SYS_STATIC=1; this CI build does not, to share the
    default build's crates)."""
    guard = re.search(r"grep -Ev '(.+?)'", DOCKERFILE.read_text()).group(1)
    pattern = re.compile(guard.replace(r"\s", r"[ \t]"))
    left = [line for line in shared_libraries(production_binary) if not pattern.search(line)]
    assert all(line.startswith("libz.so") for line in left), left
    assert "LIBZ_SYS_STATIC=1" in DOCKERFILE.read_text()
    print("\nshared libraries of the production binary:", "; ".join(shared_libraries(production_binary)))


def dockerignore_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker reads it: from the context root, `**` spans
    directories, and a matched directory takes its contents with it."""
    regex, i, body = "", 0, pattern.lstrip("/")
    while i < len(body):
        if body.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif body.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif body[i] in "*?":
            regex, i = regex + ("[^/]*" if body[i] == "*" else "[^/]"), i + 1
        else:
            regex, i = regex + re.escape(body[i]), i + 1
    return re.compile(regex + "(?:/.*)?$")


def test_the_build_context_keeps_every_crate_and_drops_artefacts():
    rules = [(line.startswith("!"), dockerignore_pattern(line.lstrip("!")))
             for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for negated, pattern in rules:  # the last matching line wins
            if pattern.match(path):
                verdict = not negated
        return verdict

    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    for needed in ["Cargo.toml", "Cargo.lock", "src/main.rs", "ingest/openapi.json", *[f"{m}/Cargo.toml" for m in members],
                   *[f"{m}/src" for m in members]]:
        assert not ignored(needed), f"{needed} must be in the build context"
    for dropped in [".git/config", "target/debug/erp-toolkit", "processor/target/x", "helm/erp-toolkit/Chart.yaml",
                    "docs/deploy.md", "erp-toolkit-data/admin-token"]:
        assert ignored(dropped), f"{dropped} should not be in the build context"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_production_binary_runs_a_role_against_a_broker(binary, production_binary, tmp_path):
    """The shipped binary's processor against a Kafka-protocol broker (the embedded one, run by
    the default build): it creates the topics, loads the configuration and reports ready."""
    broker_port, ops_port = free_port(), free_port()
    broker = subprocess.Popen([binary, "broker", "--data-dir", str(tmp_path / "kafka"),
                               "--listen", f"127.0.0.1:{broker_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(tmp_path / "processor.log", "w")
    processor = None
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", broker_port)) != 0:
            assert time.monotonic() < deadline, "the broker did not come up"
            time.sleep(0.1)
        processor = subprocess.Popen(
            [production_binary, "processor", "--brokers", f"127.0.0.1:{broker_port}",
             "--data-dir", str(tmp_path / "processor"), "--listen", f"127.0.0.1:{ops_port}",
             "--partitions", "2"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            assert processor.poll() is None, (tmp_path / "processor.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/readyz", timeout=5) as answer:
                    # Ready with the consumer's own check: until the consumer has subscribed,
                    # /readyz lists only the configuration check.
                    if json.loads(answer.read()).get("checks", {}).get("processor") is True:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "processor.log").read_text()
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5) as answer:
            assert b"erp_processor_restored_records_total" in answer.read()
    finally:
        stop(processor)
        stop(broker)
        log.close()
    assert processor.returncode == 0, (tmp_path / "processor.log").read_text()


@pytest.mark.parametrize("path", ["grafana/erp-toolkit.json", "prometheus/erp-toolkit.rules.yml"])
def test_the_deploy_files_are_the_charts(path):
    """deploy/ links to the chart's copies, so the dashboard and the rules exist once."""
    link = DEPLOY / path
    assert link.is_symlink() and link.resolve().is_relative_to(ROOT / "helm" / "erp-toolkit" / "files")
