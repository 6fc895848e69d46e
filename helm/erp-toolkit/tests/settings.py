#!/usr/bin/env python3
"""The ERP_TOOLKIT_* settings each role's `config` may set, read from the binary itself.

values.schema.json lists, per role, the environment variables of `erp-toolkit <role> --help`
minus the ones the chart sets itself (the reserved list in templates/_helpers.tpl), so a typo in a
role's `config` is refused at install time instead of being ignored by the binary.

    python3 helm/erp-toolkit/tests/settings.py --bin target/debug/erp-toolkit --check
    python3 helm/erp-toolkit/tests/settings.py --bin target/debug/erp-toolkit --write

A binary without the `api` role (before the roles were split) stands in with `ingest`, which then
served the control plane too; --check says so.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent
SCHEMA = CHART / "values.schema.json"
HELPERS = CHART / "templates" / "_helpers.tpl"
ROLES = ("ingest", "api", "processor", "dispatcher")


def reserved() -> set[str]:
    """The settings the chart derives itself, from the helper that enforces them."""
    text = HELPERS.read_text()
    block = re.search(r'define "erp-toolkit.reservedSettings".*?\{\{- list (.*?) \| toJson', text, re.S)
    if not block:
        raise SystemExit(f"no reservedSettings list in {HELPERS}")
    return set(re.findall(r'"(ERP_TOOLKIT_[A-Z0-9_]+)"', block.group(1)))


def role_help(binary: str, role: str) -> str | None:
    """`erp-toolkit <role> --help`, or None if the binary has no such role."""
    done = subprocess.run([binary, role, "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return done.stdout


def env_names(help_text: str) -> set[str]:
    return set(re.findall(r"\[env: (ERP_TOOLKIT_[A-Z0-9_]+)[=\]]", help_text))


def binary_settings(binary: str) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Every role's environment variables (its own and the global ones, such as the log
    settings), and which roles were answered by a stand-in."""
    settings, stand_ins = {}, {}
    common = env_names(subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout)
    for role in ROLES:
        text = role_help(binary, role)
        if text is None and role == "api":
            text, stand_ins[role] = role_help(binary, "ingest"), "ingest"
        if text is None:
            raise SystemExit(f"{binary} has no role {role!r}")
        settings[role] = env_names(text) | common
    return settings, stand_ins


def allowed(binary: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    settings, stand_ins = binary_settings(binary)
    keep = reserved()
    return {role: sorted(names - keep) for role, names in settings.items()}, stand_ins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the erp-toolkit binary")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail if the schema is out of date")
    mode.add_argument("--write", action="store_true", help="update values.schema.json")
    args = parser.parse_args()

    lists, stand_ins = allowed(args.bin)
    schema = json.loads(SCHEMA.read_text())
    stale = []
    for role, names in lists.items():
        enum = schema["definitions"][f"{role}Settings"]["propertyNames"]["enum"]
        if enum != names:
            stale.append(role)
            schema["definitions"][f"{role}Settings"]["propertyNames"]["enum"] = names
    for role, stand_in in stand_ins.items():
        print(f"note: the binary has no `{role}` role; `{stand_in}` stands in for it")
    if args.write:
        SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")
        print(f"values.schema.json: {'updated ' + ', '.join(stale) if stale else 'up to date'}")
        return 0
    if stale:
        print(
            f"values.schema.json: the settings of {', '.join(stale)} differ from the binary's; run\n"
            f"  python3 {Path(__file__).relative_to(CHART.parent.parent)} --bin {args.bin} --write",
            file=sys.stderr,
        )
        return 1
    print("values.schema.json: role settings match the binary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
