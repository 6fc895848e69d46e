#!/usr/bin/env bash
# End-to-end check of the multi-process run (deploy/local/run.sh): broker, API, ingest,
# processor and dispatcher as separate processes. Configures an integration, a use case and a
# webhook through the API, posts one event through the ingest tier, and waits for its signed
# delivery at `erp-toolkit webhook-receiver`. Free ports, a temporary data directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/erp-toolkit}"
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
fail() {
  echo "local run: $*" >&2
  for log in "$work"/data/*.log "$work"/receiver.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }
  done
  exit 1
}

read -r KAFKA_PORT API_PORT INGEST_PORT PROCESSOR_PORT DISPATCHER_PORT API_METRICS_PORT \
  INGEST_METRICS_PORT RECEIVER_PORT < <(python3 - <<'PY'
import socket
sockets = [socket.socket() for _ in range(8)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
for s in sockets:
    s.close()
PY
)
export BIN="$bin" DATA="$work/data" KAFKA_PORT API_PORT INGEST_PORT PROCESSOR_PORT \
  DISPATCHER_PORT API_METRICS_PORT INGEST_METRICS_PORT
"$here/run.sh" >"$work/run.log" 2>&1 & pids+=($!)

ready() { curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
for _ in $(seq 900); do
  if ready "$API_PORT" && ready "$INGEST_PORT" && ready "$PROCESSOR_PORT" && ready "$DISPATCHER_PORT"; then
    break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || fail "run.sh exited: $(cat "$work/run.log")"
  sleep 0.1
done
for port in "$API_PORT" "$INGEST_PORT" "$PROCESSOR_PORT" "$DISPATCHER_PORT"; do
  ready "$port" || fail "the process on port $port never became ready"
done
role=$(awk '/^API / {print $3}' "$work/run.log" | tr -d '()')

API="http://127.0.0.1:$API_PORT"
TOKEN=$(cat "$work/data/admin-token")
api() { curl -sf -X "$1" "$API$2" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$3"; }
INTEGRATION=$(api POST /v1/integrations '{"name": "Local run"}' | jq -r .id)
api POST "/v1/integrations/$INTEGRATION/use-cases" '{"name": "Customer Sync", "slug": "customer-sync",
  "type": "inbound", "enabled": true, "configuration": {"entities": [{"entity_schema": "contact",
  "unique_ids": ["customer_number"], "fields": [{"attribute": "customer_number", "field": "customerId"}]}]}}' >/dev/null
SECRET=$(api POST /v1/webhooks/configs "{\"name\": \"Receiver\", \"eventName\": \"event_InboundEventMapped\",
  \"url\": \"http://127.0.0.1:$RECEIVER_PORT/hook\"}" | jq -r .signingSecret)
[ -n "$SECRET" ] && [ "$SECRET" != null ] || fail "no webhook signing secret"
"$bin" webhook-receiver --listen "127.0.0.1:$RECEIVER_PORT" --secret "$SECRET" >"$work/receiver.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$RECEIVER_PORT") 2>/dev/null && break; sleep 0.1; done

# The event goes to the ingest tier, not the API: a separate process on its own port, which must
# have caught up with the configuration the API just wrote.
event="{\"integration_id\": \"$INTEGRATION\", \"events\": [{\"use_case_slug\": \"customer-sync\",
  \"timestamp\": \"2024-01-15T10:35:00Z\", \"format\": \"json\", \"payload\": \"{\\\"customerId\\\":\\\"C042\\\"}\",
  \"deduplication_id\": \"local-run-1\"}]}"
answer=
for _ in $(seq 100); do
  answer=$(curl -s -X POST "http://127.0.0.1:$INGEST_PORT/v3/erp/updates/events" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$event")
  echo "$answer" | grep -q '"status": *"success"' && break
  sleep 0.1
done
echo "$answer" | grep -q '"status": *"success"' || fail "ingest did not accept the event: $answer"

for _ in $(seq 600); do grep -q 'signature valid' "$work/receiver.log" && break; sleep 0.1; done
grep -q 'signature valid' "$work/receiver.log" || fail "no signed delivery arrived"
grep -q '"customer_number": "C042"' "$work/receiver.log" || fail "the delivery lacks the mapped entity"
echo "local run: ok (broker, $role as the API, ingest, processor, dispatcher as separate processes; 1 signed delivery)"
