#!/usr/bin/env bash
# Runs the README walkthrough verbatim (the blocks marked <!-- check:… -->) against the debug
# build of `erp-toolkit standalone`, in an empty directory, on the README's ports, and checks that
# exactly one signed delivery arrives for the two posts of the same event; then the templates and
# blueprint section installs an integration in a second organisation once, and a second time not.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/erp-toolkit"
[ -x "$bin" ] || { echo "build first: cargo build ($bin missing)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

block() {
  awk -v tag="<!-- check:$1 -->" '
    $0 == tag { found = 1; next }
    found && /^```sh/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { print }' "$root/README.md"
}

wait_for() { # url, what
  for _ in $(seq 600); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$2 did not come up" >&2; return 1
}

"$bin" standalone >standalone.log 2>&1 & pids+=($!)
wait_for http://127.0.0.1:8080/readyz "standalone" || { cat standalone.log; exit 1; }

setup=$(block setup); [ -n "$setup" ] || { echo "no check:setup block in README" >&2; exit 1; }
eval "$setup"

"$bin" webhook-receiver --listen 127.0.0.1:9000 --secret "$SECRET" >receiver.log 2>&1 & pids+=($!)
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/9000) 2>/dev/null && break; sleep 0.1; done

send=$(block send); [ -n "$send" ] || { echo "no check:send block in README" >&2; exit 1; }
eval "$send" >send.log
grep -c '"status": "success"' send.log | grep -qx 2 || { echo "posts not accepted:"; cat send.log; exit 1; }

for _ in $(seq 300); do grep -q 'signature valid' receiver.log && break; sleep 0.1; done
skipped=0
for _ in $(seq 300); do
  skipped=$(curl -s -H "Authorization: Bearer $TOKEN" "$ERP/metrics" | awk '/^erp_processor_events_total\{outcome="skipped"\}/ {print $2}')
  [ "${skipped:-0}" = 1 ] && break; sleep 0.1
done
sleep 1
deliveries=$(grep -c 'webhook-id=' receiver.log || true)
valid=$(grep -c 'signature valid' receiver.log || true)
if [ "$deliveries" != 1 ] || [ "$valid" != 1 ] || [ "${skipped:-0}" != 1 ] \
   || ! grep -q '"customer_number": "C001"' receiver.log; then
  echo "walkthrough failed: deliveries=$deliveries valid=$valid skipped=${skipped:-0}" >&2
  cat receiver.log standalone.log >&2
  exit 1
fi
simulate=$(block simulate); [ -n "$simulate" ] || { echo "no check:simulate block in README" >&2; exit 1; }
eval "$simulate" >simulate.log
grep -q '"full_name": "John Doe"' simulate.log || { echo "simulation failed:"; cat simulate.log; exit 1; }

blueprint=$(block blueprint); [ -n "$blueprint" ] || { echo "no check:blueprint block in README" >&2; exit 1; }
erp-toolkit() { "$bin" "$@"; }
eval "$blueprint" >blueprint.log 2>&1 || { echo "blueprint section failed:"; cat blueprint.log; exit 1; }
if ! grep -q 'applied as one configuration event' blueprint.log \
   || ! grep -q 'nothing to apply' blueprint.log \
   || ! grep -q 'sync-meter-readings' blueprint.log; then
  echo "blueprint section did not install once and then do nothing:" >&2; cat blueprint.log >&2; exit 1
fi

echo "README walkthrough: ok (1 signed delivery, 1 duplicate skipped, simulation, templates and a blueprint)"
