#!/usr/bin/env python3
"""The values table of the chart's README.md, generated from the comments of values.yaml.

A `# -- text` comment (continued by the `# text` lines after it) documents the key below it; a
documented key whose value is a map or a list is one row, otherwise every key below an
undocumented map is a row of its own. README.md keeps its prose; only the part between
`<!-- values:start -->` and `<!-- values:end -->` is generated.

    python3 helm/erp-toolkit/tests/readme.py --check
    python3 helm/erp-toolkit/tests/readme.py --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\-]+):(\s|$)")


@dataclass
class Row:
    key: str
    kind: str
    default: str
    description: str


def descriptions() -> dict[str, str]:
    """dotted key -> its `# --` comment."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in VALUES.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if pending is not None and stripped.startswith("#"):
            pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            if stripped and not stripped.startswith("#"):
                pending = None
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if pending is not None:
            found[".".join(key for _, key in stack)] = " ".join(pending)
            pending = None
    return found


def rows() -> list[Row]:
    values = yaml.safe_load(VALUES.read_text())
    documented = descriptions()
    found: list[Row] = []

    def walk(node, path: list[str]):
        key = ".".join(path)
        if key in documented or not isinstance(node, dict) or not node:
            found.append(Row(key, kind_of(node), json.dumps(node, separators=(",", ":")), documented.get(key, "")))
            return
        for child, value in node.items():
            walk(value, path + [child])

    for child, value in values.items():
        walk(value, [child])
    return found


def kind_of(value) -> str:
    return {dict: "object", list: "list", bool: "bool", int: "int", float: "float", str: "string"}.get(
        type(value), "null" if value is None else type(value).__name__)


def table() -> str:
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows():
        default, description = (text.replace("|", "\\|") for text in (row.default, row.description))
        lines.append(f"| `{row.key}` | {row.kind} | `{default}` | {description} |")
    return "\n".join(lines)


def render() -> str:
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write:
        README.write_text(render())
        return 0
    if render() != README.read_text():
        print("README.md is out of date: python3 helm/erp-toolkit/tests/readme.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
