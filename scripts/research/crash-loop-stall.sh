#!/usr/bin/env bash
# Defect B of the embedded broker (docs/embedded-broker.md): posts EVENTS events to one
# integration in batches of BATCH while `erp-toolkit standalone` is killed with SIGKILL and
# restarted at once, KILLS times a few seconds apart; then watches whether the processor's
# consumer group gets its partitions back and the backlog on erp.inbound.events drains.
#
# Usage: scripts/research/crash-loop-stall.sh [work-dir]     (debug build: cargo build first)
# Env:   EVENTS=2000 BATCH=50 KILLS=3 GAP=4 WATCH=420 HTTP_PORT=28180 BROKER_PORT=28192
#        CLEAN_RESTART=1: after a stall, stop with SIGTERM, start again and watch once more
#        RUST_LOG (default: info plus tansu's group coordinator at debug)
# Exit:  1 when the defect reproduced (the run after the last SIGKILL did not drain within WATCH s),
#        0 when it drained.
# Leaves the logs (standalone-N.log), the persisted group rows (group-*.json), the processor
# group's request trace (trace-N.txt, from group-trace.py) and the poster's log in the work dir.
# A single SIGKILL (KILLS=1) is enough; so is a plain librdkafka consumer (docs/embedded-broker.md).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$root/scripts/research/lib.sh"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/erp-toolkit"
[ -x "$bin" ] || { echo "build first: cargo build ($bin missing)" >&2; exit 2; }
for tool in jq curl sqlite3; do
  command -v $tool >/dev/null || { echo "$tool is needed (apt-get install $tool)" >&2; exit 2; }
done

EVENTS=${EVENTS:-2000}; BATCH=${BATCH:-50}; KILLS=${KILLS:-3}; GAP=${GAP:-4}; WATCH=${WATCH:-420}
HTTP_PORT=${HTTP_PORT:-28180}; BROKER_PORT=${BROKER_PORT:-28192}
export RUST_LOG=${RUST_LOG:-info,tansu_broker::coordinator=debug}
export NO_COLOR=1
work=${1:-$(mktemp -d /tmp/crash-loop-stall.XXXXXX)}
mkdir -p "$work"; cd "$work" || exit 2
data=$work/data
ERP=http://127.0.0.1:$HTTP_PORT
db=$data/kafka/kafka.db
echo "work dir: $work"

pid=""; poster=""; run=0
cleanup() {
  [ -n "$poster" ] && kill "$poster" 2>/dev/null
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
}
trap cleanup EXIT

start() {
  run=$((run + 1))
  "$bin" standalone --data-dir "$data" --listen 127.0.0.1:$HTTP_PORT \
    --broker-listen 127.0.0.1:$BROKER_PORT >"standalone-$run.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    curl -sf "$ERP/readyz" >/dev/null 2>&1 && { echo "$(date +%T) run $run ready (pid $pid)"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "standalone run $run did not become ready" >&2; tail -20 "standalone-$run.log" >&2; exit 2
}

sql() { sqlite3 -readonly "file:$db?mode=ro" "$1" 2>/dev/null; }
# High watermark and the processor group's committed offset of erp.inbound.events/0..n.
backlog() {
  sql "select tp.partition, w.high, coalesce(co.committed_offset, 0)
       from topic t join topition tp on tp.topic = t.id join watermark w on w.topition = tp.id
       left join consumer_group cg on cg.name = 'erp-toolkit-processor'
       left join consumer_offset co on co.topition = tp.id and co.consumer_group = cg.id
       where t.name = 'erp.inbound.events' and w.high > 0 order by tp.partition"
}
group_rows() { # the persisted group state of every group, one JSON line each
  sql "select cg.name, d.detail from consumer_group cg join consumer_group_detail d on d.consumer_group = cg.id"
}

start
TOKEN=$(cat "$data/admin-token")
INTEGRATION=$(create_integration "$ERP" "$TOKEN" "crash loop") \
  || { echo "integration not created" >&2; exit 2; }

# The poster: like middleware, it retries a batch until it is accepted.
post_all() {
  local batch=0 n
  for ((first = 0; first < EVENTS; first += BATCH)); do
    batch=$((batch + 1))
    body=$(jq -cn --arg i "$INTEGRATION" --argjson f "$first" --argjson b "$BATCH" '
      {integration_id: $i, events: [range($f; $f + $b) | {use_case_slug: "customer-sync",
        timestamp: "2024-01-15T10:35:00Z", format: "json",
        payload: ({customerId: "C\(.)"} | tostring), deduplication_id: "crash-\(.)"}]}')
    for attempt in $(seq 200); do
      code=$(curl -s -m 40 -o /dev/null -w '%{http_code}' -X POST "$ERP/v3/erp/updates/events" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body")
      [ "$code" = 200 ] && break
      sleep 0.2
    done
    echo "$(date +%T.%N | cut -c1-12) batch $batch ($first..) -> $code after $attempt attempt(s)"
  done
  echo "$(date +%T) poster done"
}
post_all >poster.log 2>&1 &
poster=$!

for k in $(seq "$KILLS"); do
  sleep "$GAP"
  echo "$(date +%T) SIGKILL run $run (pid $pid)"
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  group_rows >"group-after-kill-$k.json"
  start
done
wait "$poster"; poster=""
tail -1 poster.log
accepted=$(grep -c -- '-> 200' poster.log)
echo "$(date +%T) $accepted of $(( (EVENTS + BATCH - 1) / BATCH )) batches accepted; watching for ${WATCH}s"

# Waits up to $1 s for the processor of the current run to be assigned and the backlog to drain.
watch_backlog() {
  local t0 last="" now due done_n
  t0=$(date +%s)
  while (( $(date +%s) - t0 < $1 )); do
    now=$(backlog | tr '\n' ' ')
    [ "$now" != "$last" ] && echo "$(date +%T) +$(( $(date +%s) - t0 ))s partition|high|committed: $now"
    last=$now
    if grep -q "partition assigned" "standalone-$run.log"; then
      # The group offset is advisory (sled holds the position) and trails by the last batch
      # once input stops: what is due is the high watermark minus the position each partition
      # started at in this run, and progress is this run's erp_processor_events_total.
      due=$(backlog | while IFS='|' read -r partition high committed; do
        start=$(grep -o "stored position topic=\"erp.inbound.events\" partition=$partition position=[0-9]*" \
          "standalone-$run.log" | tail -1 | sed 's/.*position=//')
        echo $(( high - ${start:-$committed} ))
      done | awk '{s += $1} END {print s + 0}')
      done_n=$(curl -s "$ERP/metrics" | awk '/^erp_processor_events_total/ {s += $2} END {print s + 0}')
      if [ "$done_n" -ge "$due" ]; then
        echo "RESULT: run $run drained after $(( $(date +%s) - t0 ))s ($done_n records processed)"
        return 0
      fi
    fi
    sleep 5
  done
  echo "RESULT: run $run STALLED after $1 s: backlog $(backlog | tr '\n' ' ')(partition|high|group offset);" \
    "$(grep -c "partition assigned" "standalone-$run.log") 'partition assigned' lines"
  return 1
}
summarise() {
  group_rows >"group-run-$run.json"
  python3 "$root/scripts/research/group-trace.py" "standalone-$run.log" >"trace-$run.txt" 2>/dev/null
  echo "persisted processor group after run $run:"
  sed -n 's/^erp-toolkit-processor|//p' "group-run-$run.json" | jq -c '{generation_id,
    state: (.state | keys[0]), leader: (.state[] | .leader),
    assignments: ((.state[] | .assignments // {}) | keys), members: (.members | keys)}'
}

watch_backlog "$WATCH"; stalled=$?
summarise
if [ $stalled != 0 ] && [ "${CLEAN_RESTART:-0}" = 1 ]; then
  echo "$(date +%T) clean restart (SIGTERM) of run $run"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  start
  watch_backlog 120
  summarise
fi
exit $stalled
