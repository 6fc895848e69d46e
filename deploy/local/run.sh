#!/usr/bin/env bash
# Runs the roles of deploy/local/Procfile as separate processes on one machine against the
# embedded broker (run as a process of its own), each with its own data directory, port and log
# (`$DATA/<name>.log`). The broker comes first; the roles follow once it accepts connections.
# Ctrl-C or SIGTERM stops everything; so does any process exiting.
#
#   deploy/local/run.sh                     # binary: $CARGO_TARGET_DIR/debug/erp-toolkit
#   DATA=/tmp/erp API_PORT=9080 deploy/local/run.sh
#
# API_ROLE is the subcommand of the control plane: `api` where the binary has it; a binary from
# before the roles were split has only `ingest`, which then serves the control plane too (the
# `ingest` process beside it is the thin inbound tier either way).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export BIN="${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/erp-toolkit}"
[ -x "$BIN" ] || { echo "build first: cargo build ($BIN missing)" >&2; exit 1; }
export DATA="${DATA:-$root/erp-toolkit-data/local}"
export KAFKA_PORT="${KAFKA_PORT:-19092}" API_PORT="${API_PORT:-18080}" INGEST_PORT="${INGEST_PORT:-18081}"
export PROCESSOR_PORT="${PROCESSOR_PORT:-18082}" DISPATCHER_PORT="${DISPATCHER_PORT:-18083}"
export API_METRICS_PORT="${API_METRICS_PORT:-18090}" INGEST_METRICS_PORT="${INGEST_METRICS_PORT:-18091}"
export PARTITIONS="${PARTITIONS:-3}"
if [ -z "${API_ROLE:-}" ]; then
  if "$BIN" api --help >/dev/null 2>&1; then API_ROLE=api; else API_ROLE=ingest; fi
fi
export API_ROLE
# The thin ingest tier does not serve the poll queue (it has a single writer: the API).
if [ "$API_ROLE" = ingest ]; then export INGEST_ARGS="--poll-queue false"; else export INGEST_ARGS=""; fi

mkdir -p "$DATA"
# Secrets as the Helm chart takes them from Kubernetes Secrets: made once, kept in $DATA.
[ -s "$DATA/admin-token" ] || (umask 077 && echo "erpt_$(openssl rand -hex 24)" >"$DATA/admin-token")
[ -s "$DATA/secrets-key" ] || (umask 077 && openssl rand -base64 32 >"$DATA/secrets-key")
[ -s "$DATA/signing-key.pem" ] || (umask 077 && openssl genpkey -algorithm ed25519 -out "$DATA/signing-key.pem" 2>/dev/null)
ERP_TOOLKIT_ADMIN_TOKEN=$(cat "$DATA/admin-token")
export ERP_TOOLKIT_ADMIN_TOKEN
# As in the chart: cooperative-sticky assignment for the group members. The processor and the
# dispatcher take it from their own environment below.
group_options="partition.assignment.strategy=cooperative-sticky"

pids=()
# Waits for the processes, up to $1 seconds in all, then kills what is left.
reap() {
  local deadline=$((SECONDS + $1)) pid
  shift
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        echo "pid $pid did not stop after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
      sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
  done
}
# The roles stop first, so they commit and leave their groups while the broker still runs.
stop() {
  # A second Ctrl-C must not leave processes behind: stopping, once begun, runs to the end.
  trap '' INT TERM
  trap - EXIT
  local roles=("${pids[@]:1}")
  if ((${#roles[@]})); then
    kill "${roles[@]}" 2>/dev/null || true
    reap 30 "${roles[@]}"
  fi
  if ((${#pids[@]})); then
    kill "${pids[0]}" 2>/dev/null || true
    reap 10 "${pids[0]}"
  fi
}
trap stop INT TERM EXIT

start() { # name, command line
  local name=$1 command=$2 extra=()
  case "$name" in
    processor|dispatcher) extra=(env "ERP_TOOLKIT_KAFKA_OPTIONS=$group_options") ;;
    api) extra=(env "ERP_TOOLKIT_METRICS_LISTEN=127.0.0.1:$API_METRICS_PORT") ;;
    ingest) extra=(env "ERP_TOOLKIT_METRICS_LISTEN=127.0.0.1:$INGEST_METRICS_PORT") ;;
  esac
  # shellcheck disable=SC2086 # the Procfile line is split into words, as a Procfile runner does
  "${extra[@]}" $(eval "echo $command") >"$DATA/$name.log" 2>&1 &
  pids+=($!)
  echo "$name: pid $! (log $DATA/$name.log)"
}

procfile() { grep -Ev '^\s*(#|$)' "$here/Procfile"; }
line() { procfile | awk -F': ' -v name="$1" '$1 == name { sub(/^[^:]+: /, ""); print; exit }'; }

start broker "$(line broker)"
for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.1; done
(echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null || { echo "the broker did not come up" >&2; exit 1; }
for name in $(procfile | cut -d: -f1 | grep -vx broker); do
  start "$name" "$(line "$name")"
done
echo "API http://127.0.0.1:$API_PORT ($API_ROLE)  ingest http://127.0.0.1:$INGEST_PORT  admin token in $DATA/admin-token"

# Any process ending ends the run (a supervisor would restart it; this is a test bed).
status=0
wait -n "${pids[@]}" || status=$?
echo "a process exited ($status); stopping the others" >&2
exit "$status"
