#!/usr/bin/env bash
# Defect A of the embedded broker (docs/embedded-broker.md): a broker restart (or pause) under a
# live idempotent producer panics tansu's storage task.
#
# Runs `erp-toolkit broker` and `erp-toolkit ingest` (plus `erp-toolkit api` for the configuration
# where the binary has that role) as separate processes, posts an event, stops
# the broker, posts an event while it is down (its record outlives message.timeout.ms, so
# librdkafka bumps the producer epoch locally), starts the broker again on the same data and
# posts once more: tansu's storage thread panics in idempotent_message_check ("more or less than
# one row"). Then it shows that restarting the broker alone panics again, and that restarting
# the ingest (a new producer id) recovers.
#
# Usage: scripts/research/tansu-idempotent-restart.sh [work-dir]   (debug build: cargo build first)
# Env:   MODE=restart|pause   pause: SIGSTOP/SIGCONT the broker instead of restarting it
#        TIMEOUT_MS=5000      the ingest's message.timeout.ms (the roles default to 30000)
#        KAFKA_OPTIONS=...    extra --kafka-option values for the ingest, ';'-separated
#                             (e.g. 'enable.idempotence=false' is the control: no panic)
#        KAFKA_DEBUG=eos      librdkafka debug context for the ingest (one context: the
#                             --kafka-option flag splits values on ',')
#        HTTP_PORT=28380 BROKER_PORT=28392 (the api role, if any, listens on HTTP_PORT + 1)
# Exit:  0 when the panic was reproduced, 1 when it was not, 2 on a setup failure.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$root/scripts/research/lib.sh"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/erp-toolkit"
[ -x "$bin" ] || { echo "build first: cargo build ($bin missing)" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }

MODE=${MODE:-restart}; TIMEOUT_MS=${TIMEOUT_MS:-5000}; KAFKA_DEBUG=${KAFKA_DEBUG:-eos}
HTTP_PORT=${HTTP_PORT:-28380}; BROKER_PORT=${BROKER_PORT:-28392}
work=${1:-$(mktemp -d /tmp/tansu-idempotent-restart.XXXXXX)}
mkdir -p "$work"; cd "$work" || exit 2
ERP=http://127.0.0.1:$HTTP_PORT
TOKEN=erpt_research_$(date +%s)
export NO_COLOR=1
echo "work dir: $work (mode $MODE, message.timeout.ms $TIMEOUT_MS)"

broker_pid=""; ingest_pid=""; api_pid=""; broker_run=0; ingest_run=0
cleanup() {
  [ -n "$broker_pid" ] && kill -CONT "$broker_pid" 2>/dev/null
  for p in $api_pid $ingest_pid $broker_pid; do kill -TERM "$p" 2>/dev/null; done
  for p in $api_pid $ingest_pid $broker_pid; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT

start_broker() {
  broker_run=$((broker_run + 1))
  # The produce path's idempotence check at debug: the SQL parameters name the failing batch.
  RUST_LOG='info,tansu_storage[idempotent_message_check]=debug' \
    "$bin" broker --data-dir "$work/kafka" --listen 127.0.0.1:$BROKER_PORT \
    >"broker-$broker_run.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do
    grep -q "broker listening" "broker-$broker_run.log" && return 0
    sleep 0.1
  done
  echo "broker run $broker_run did not start" >&2; head -5 "broker-$broker_run.log" >&2; exit 2
}

start_ingest() {
  ingest_run=$((ingest_run + 1))
  local options=(--kafka-option "message.timeout.ms=$TIMEOUT_MS"
                 --kafka-option "reconnect.backoff.max.ms=1000"
                 --kafka-option "debug=$KAFKA_DEBUG")
  IFS=';' read -ra extra <<<"${KAFKA_OPTIONS:-}"
  for option in "${extra[@]}"; do [ -n "$option" ] && options+=(--kafka-option "$option"); done
  RUST_LOG=info,librdkafka=debug "$bin" ingest --brokers 127.0.0.1:$BROKER_PORT \
    --admin-token "$TOKEN" --listen 127.0.0.1:$HTTP_PORT "${options[@]}" \
    >"ingest-$ingest_run.log" 2>&1 &
  ingest_pid=$!
  for _ in $(seq 300); do
    curl -sf "$ERP/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "ingest run $ingest_run did not become ready" >&2; tail "ingest-$ingest_run.log" >&2; exit 2
}

# The configuration routes: on the ingest itself, or on a separate `api` role when there is one
# (the restructured layout); it gets the ingest's Kafka settings so its producer is alike.
CONFIG=$ERP
start_api() {
  "$bin" api --help >/dev/null 2>&1 || return 0
  CONFIG=http://127.0.0.1:$((HTTP_PORT + 1))
  RUST_LOG=info "$bin" api --brokers 127.0.0.1:$BROKER_PORT --admin-token "$TOKEN" \
    --listen 127.0.0.1:$((HTTP_PORT + 1)) >api.log 2>&1 &
  api_pid=$!
  for _ in $(seq 300); do
    curl -sf "$CONFIG/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "api did not become ready" >&2; tail api.log >&2; exit 2
}

n=0
post() { # posts one event; prints the status and the time taken, leaves the status in $code
  n=$((n + 1))
  local result
  result=$(curl -s -m 60 -o /dev/null -w '%{http_code} %{time_total}s' -X POST \
    "$ERP/v3/erp/updates/events" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"integration_id": "'"$INTEGRATION"'", "events": [{"use_case_slug": "customer-sync",
         "timestamp": "2024-01-15T10:35:00Z", "format": "json",
         "payload": "{\"customerId\":\"C'$n'\"}", "deduplication_id": "restart-'$n'"}]}')
  code=${result%% *}
  [ "${2:-}" = quiet ] && [ "$code" != 200 ] && return
  echo "$(date +%T) post $n ($1): $result"
}

panicked() { grep -l "more or less than one row" broker-*.log 2>/dev/null | head -1; }

start_broker
start_ingest
start_api
INTEGRATION=$(create_integration "$CONFIG" "$TOKEN" "restart") \
  || { echo "integration not created" >&2; exit 2; }
# A separate ingest learns of the integration from erp.config: wait until it accepts the event.
for _ in $(seq 50); do
  post "broker up" quiet
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] || { echo "the ingest does not accept events (status $code)" >&2; exit 2; }
if [ "$MODE" = pause ]; then
  echo "$(date +%T) SIGSTOP broker"; kill -STOP "$broker_pid"
  post "broker paused"
  sleep 1; echo "$(date +%T) SIGCONT broker"; kill -CONT "$broker_pid"
else
  echo "$(date +%T) stopping the broker (SIGTERM)"; kill -TERM "$broker_pid"; wait "$broker_pid"
  post "broker down"
  sleep 1; echo "$(date +%T) starting the broker on the same data"; start_broker
fi
sleep 3 # let the ingest's clients reconnect
post "broker back"
sleep 1
if [ -z "$(panicked)" ]; then
  echo "no panic: the defect did not reproduce with these settings"
  exit 1
fi
log=$(panicked)
echo "--- $log: the batch without a producer_epoch row, then the panic"
grep -B1 "producer_select_for_update" "$log" | grep -o 'sql=.*' | tail -2
grep -m1 -A1 "panicked at" "$log"
echo "--- ingest ($ingest_run): librdkafka's local epoch bump"
grep -E "TIMEOUT|bumped epoch|-> PID\{Id:[0-9]+,Epoch:[1-9]" "ingest-$ingest_run.log" \
  | sed 's/.*librdkafka: //' | head -4
echo "--- after the panic"
echo "ingest /readyz: $(curl -s "$ERP/readyz")"
kill -0 "$broker_pid" 2>/dev/null && echo "broker process $broker_pid is still running; its storage task is gone:"
grep -m2 "UnableToSend" "$log" | grep -o 'err=.*' | head -2

echo "--- restarting the broker alone: the live producer keeps its bumped epoch"
kill -TERM "$broker_pid"; wait "$broker_pid"; start_broker
sleep 3; post "broker restarted, same ingest"; sleep 1
grep -q "more or less than one row" "broker-$broker_run.log" \
  && echo "broker run $broker_run panicked again" || echo "broker run $broker_run did not panic"

echo "--- restarting broker and ingest: a new producer id"
kill -TERM "$ingest_pid"; wait "$ingest_pid"
[ -n "$api_pid" ] && { kill -TERM "$api_pid"; wait "$api_pid"; api_pid=""; }
kill -TERM "$broker_pid"; wait "$broker_pid"; start_broker; start_ingest
post "both restarted"; sleep 1
grep -q "more or less than one row" "broker-$broker_run.log" \
  && echo "broker run $broker_run panicked" || echo "broker run $broker_run is healthy"
echo "producer rows (id, epochs):"
sqlite3 -readonly "file:$work/kafka/kafka.db?mode=ro" \
  "select p.id, group_concat(pe.epoch) from producer p join producer_epoch pe on pe.producer = p.id group by p.id" 2>/dev/null \
  || echo "(sqlite3 not installed)"
exit 0
