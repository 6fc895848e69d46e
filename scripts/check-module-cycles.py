#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a circle, or a crate imports a crate it
may not (docs/architecture.md, "What may import what").

Module edges: every `crate::a::b` and `super::x` path in a source file (in `use` declarations and
inline paths alike, tests excluded) is an edge from that file's module to the module it names.
A module is a file (`foo.rs`, `foo/mod.rs`); an edge to an item resolves to the deepest module
named. Run from the repository root: `scripts/check-module-cycles.py`.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Which workspace crates each crate may depend on (the layers of docs/architecture.md).
ALLOWED = {
    "erp-schemas": set(),
    "erp-mapping": {"erp-schemas"},
    "erp-webhooks": {"erp-schemas", "erp-mapping"},
    "erp-runtime": {"erp-schemas"},
    "erp-http": {"erp-schemas", "erp-runtime"},
    "erp-ingest": {"erp-schemas", "erp-mapping", "erp-runtime", "erp-http"},
    "erp-api": {"erp-schemas", "erp-mapping", "erp-webhooks", "erp-runtime", "erp-http"},
    "erp-processor": {"erp-schemas", "erp-mapping", "erp-runtime"},
    "erp-dispatcher": {"erp-schemas", "erp-mapping", "erp-webhooks", "erp-runtime"},
}


# Circles known and left to their owners, reported but not failing; a new circle fails.
# erp-schemas: `avro` frames with `wire`, and `wire` chooses a format per `avro::AvroRecord`
# (from the schema-catalog work, merged after the layout move).
KNOWN = {("erp-schemas", "avro -> wire -> avro")}


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    # The conventional trailing `#[cfg(test)] mod tests { … }`.
    cut = text.find("#[cfg(test)]\nmod tests")
    return text if cut < 0 else text[:cut]


def crate_edges(src: Path) -> dict:
    files = [f for f in src.rglob("*.rs") if not f.name.endswith("_tests.rs")]
    modules = {module_of(src, f) for f in files}
    edges = {}
    for file in files:
        here = module_of(src, file)
        text = strip_tests(file.read_text())
        # Comments (doc links included) are not imports.
        text = re.sub(r"//[^\n]*", "", text)
        # Expand `use crate::a::{b, c::d}` one level, enough for the code here.
        targets = []
        for match in re.finditer(r"\b(crate|super(?:::super)*)((?:::\w+)+)(::\{([^}]*)\})?", text):
            base, path, _, group = match.groups()
            path = [p for p in path.split("::") if p]
            if base == "crate":
                start = []
            else:
                ups = base.count("super")
                # A file module `a/b.rs` is `a::b`; `super` is `a`.
                start = list(here[: len(here) - ups])
            heads = [start + path]
            if group:
                for item in group.split(","):
                    item = item.strip().split(" as ")[0].split("::")[0]
                    if item and item != "self":
                        heads.append(start + path + [item])
            targets.extend(heads)
        for target in targets:
            # The deepest module the path names.
            for n in range(len(target), -1, -1):
                candidate = tuple(target[:n])
                if candidate in modules:
                    break
            # The crate root only declares modules and re-exports: naming an item through it is
            # naming the module that defines it, which the re-export hides, so it is skipped.
            if candidate not in (here, ()):
                edges.setdefault(here, set()).add(candidate)
    return edges


def cycles(edges: dict) -> list:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def main() -> int:
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    failed = False
    for member in workspace["workspace"]["members"] + ["."]:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        deps = {d for d in manifest.get("dependencies", {}) if d.startswith("erp-")}
        if name in ALLOWED and not deps <= ALLOWED[name]:
            print(f"{name} depends on {sorted(deps - ALLOWED[name])}, which it may not")
            failed = True
        src = ROOT / member / "src"
        for circle in cycles(crate_edges(src)):
            text = " -> ".join("::".join(m) or "crate" for m in circle)
            if (name, text) in KNOWN:
                print(f"{name}: {text} (known, left to its owner)")
                continue
            print(f"{name}: {text}")
            failed = True
    if not failed:
        print("no new module circles, no upward crate dependencies")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
