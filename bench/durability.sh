#!/usr/bin/env bash
# bench/durability.sh: what persistence costs and how fast iotd recovers
# (`make bench-durability`). It builds iotd and measures, on 127.0.0.1:
#
#   1. QoS 1 throughput to persistent sessions (clean session 0) with
#      --fsync always, --fsync interval:1s and --persistence off: msg/s,
#      publish-to-delivery and publish-to-PUBACK latency (p50/p99), and the
#      bytes the broker wrote per message (write() calls and, from
#      /proc/PID/io write_bytes, what reached the block layer); then
#      publish-to-PUBACK latency at a fixed rate, where no queue hides it.
#   2. Recovery: SESSIONS persistent sessions x BACKLOG queued messages
#      (default 100 x 10,000 = 1M), the broker killed with SIGKILL, then
#      restarted RESTARTS times: time from exec to the ready line, and peak
#      memory (VmHWM, /proc/PID/status); the data directory's size per
#      queued message; finally every session drains its backlog and the
#      load generator checks that nothing was lost or duplicated.
#
# The tables replace the durability section of BENCHMARKS.md (between
# <!-- durability:begin --> and <!-- durability:end -->; appended if the
# markers are missing). Nothing outside the markers is touched.
#
# Knobs (environment):
#   DURATION=10s    publishing time per throughput run
#   RATE=2000       msg/s of the fixed-rate latency runs
#   SESSIONS=100    persistent sessions in the recovery measurement
#   BACKLOG=10000   messages queued per session (SESSIONS x BACKLOG in all)
#   RESTARTS=3      timed restarts of the recovered broker (median shown)
#   QUICK=1         smoke test: 3s runs, 20 x 2,000 backlog, 1 restart
#   REPORT_MD=BENCHMARKS.md   where the tables go (a scratch file keeps a
#                   debugging run out of BENCHMARKS.md)
#   BUILD_FROM=head build iotd from the committed HEAD; "worktree" builds
#                   the work tree with its uncommitted changes
#   KEEP=1          keep the temporary directory (logs, JSON, data dirs)
#
# Everything listens and connects on 127.0.0.1 only; every run is bounded
# by --duration/--count and --timeout; every broker started here is stopped
# on exit. Needs jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	DURATION=${DURATION:-3s}
	SESSIONS=${SESSIONS:-20}
	BACKLOG=${BACKLOG:-2000}
	RESTARTS=${RESTARTS:-1}
fi
DURATION=${DURATION:-10s}
RATE=${RATE:-2000}
SESSIONS=${SESSIONS:-100}
BACKLOG=${BACKLOG:-10000}
RESTARTS=${RESTARTS:-3}
REPORT_MD=${REPORT_MD:-BENCHMARKS.md}
BUILD_FROM=${BUILD_FROM:-head}
KEEP=${KEEP:-0}

# Broker limits, raised so that they are not what is measured (the same as
# bench/compare.sh); the recovery run queues BACKLOG per session.
INFLIGHT=65535
QUEUED=$((BACKLOG > 100000 ? BACKLOG : 100000))
PAYLOAD=64

BENCH=bench-durability
PORT_BASE=${PORT_BASE:-31883}
PORT_END=39000

command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
[[ -r /proc/self/io ]] || die "/proc/PID/io is not readable here (Linux with task I/O accounting needed)"

command=$(repro_command "make bench-durability" QUICK DURATION RATE SESSIONS BACKLOG RESTARTS BUILD_FROM)

make_work iotd-durability "logs, JSON results and data directories"
STARTED=$(date +%s)

# --- build ------------------------------------------------------------------------
build_iotd
DATA_FS=$(stat -f -c %T "$WORK")
DATA_DEV=$(df --output=source "$WORK" | tail -n 1)

# --- broker ---------------------------------------------------------------------
now_ns() { date +%s%N; }

BROKER_LOG=""
READY_MS=""
# start_broker DATADIR ARGS...: start iotd on a fresh port and wait for its
# ready line (at most 5 minutes: recovery of a large backlog takes a while);
# sets BROKER_PID, PORT and READY_MS (exec to ready line, ms).
start_broker() {
	local data=$1 t0
	shift
	free_port
	BROKER_LOG=$WORK/iotd.$PORT.log
	t0=$(now_ns)
	"$IOTD" serve --listen "tcp://127.0.0.1:$PORT" --data-dir "$data" \
		--max-inflight "$INFLIGHT" --max-queued-messages "$QUEUED" --log-level warn "$@" >"$BROKER_LOG" 2>&1 &
	BROKER_PID=$!
	wait_broker "iotd did not get ready on 127.0.0.1:$PORT" 60000 0.005 ready_line || return 1
	READY_MS=$((($(now_ns) - t0) / 1000000))
}

# ready_line: whether the broker printed its ready line (its log may not
# exist yet).
ready_line() { grep -q ' ready: ' "$BROKER_LOG" 2>/dev/null; }

# stop_broker comes from bench/lib.sh.

kill9_broker() {
	local pid=$BROKER_PID
	BROKER_PID=""
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
}

# proc_field PID FILE FIELD: a number from /proc/PID/FILE ("Field: n ...").
proc_field() { awk -v f="$3:" '$1 == f {print $2; exit}' "/proc/$1/$2"; }

# loadtest OUT ARGS...: run the load generator against PORT, JSON to OUT.
loadtest() {
	local out=$1
	shift
	if ! "$IOTD" loadtest "$@" --addr "127.0.0.1:$PORT" --payload "$PAYLOAD" --json >"$out" 2>"$out.progress"; then
		log "loadtest $* failed:"
		tail -n 5 "$out.progress" >&2 || true
		cat "$out" >&2 || true
		return 1
	fi
	local errs
	errs=$(jq -r '.errors' "$out")
	[[ $errs == 0 ]] || log "warning: loadtest $*: $errs errors: $(jq -c '.error_samples' "$out")"
}

MODES=("always|--fsync always" "interval:1s|--fsync interval:1s" "off|--persistence off")
mode_args() { local m=$1; echo "${m#*|}"; }
mode_name() { local m=$1; echo "${m%%|*}"; }

# --- 1. throughput and acknowledgement latency ---------------------------------
CELLS=(
	"fanin 10 → 1|fanin -P 10 -S 1"
	"pairs 100 clients|pairs -c 100"
)
RESULTS=$WORK/throughput.tsv
: >"$RESULTS"
for cell in "${CELLS[@]}"; do
	name=${cell%%|*}
	read -r -a args <<<"${cell#*|}"
	for m in "${MODES[@]}"; do
		mode=$(mode_name "$m")
		read -r -a margs <<<"$(mode_args "$m")"
		data=$WORK/data.tp.$RANDOM
		start_broker "$data" "${margs[@]}"
		w0=$(proc_field "$BROKER_PID" io write_bytes)
		c0=$(proc_field "$BROKER_PID" io wchar)
		out=$WORK/tp.${args[0]}.${mode%%:*}.json
		log "throughput: $name, QoS 1, persistent sessions, $mode ($DURATION)"
		loadtest "$out" "${args[@]}" --qos 1 --persistent-sessions --duration "$DURATION" --timeout 5m
		w1=$(proc_field "$BROKER_PID" io write_bytes)
		c1=$(proc_field "$BROKER_PID" io wchar)
		du=$(du -sb "$data" | cut -f1)
		stop_broker
		jq -r --arg name "$name" --arg mode "$mode" --argjson wb $((w1 - w0)) --argjson wc $((c1 - c0)) --argjson du "$du" \
			'[$name, $mode, .msgs_per_sec, .latency_ms.p50, .latency_ms.p99, .ack_latency_ms.p50, .ack_latency_ms.p99,
			  .received, .lost, .duplicated, ($wc / ([.received, 1] | max)), ($wb / ([.received, 1] | max)), $du, .sent] | @tsv' "$out" >>"$RESULTS"
		rm -rf "$data"
	done
done

LATENCY=$WORK/latency.tsv
: >"$LATENCY"
for m in "${MODES[@]}"; do
	mode=$(mode_name "$m")
	read -r -a margs <<<"$(mode_args "$m")"
	data=$WORK/data.lat.$RANDOM
	start_broker "$data" "${margs[@]}"
	out=$WORK/lat.${mode%%:*}.json
	log "latency: 1 → 1 at $RATE msg/s, QoS 1, persistent session, $mode ($DURATION)"
	loadtest "$out" latency --rate "$RATE" --qos 1 --persistent-sessions --duration "$DURATION" --timeout 5m
	stop_broker
	jq -r --arg mode "$mode" '[$mode, .ack_latency_ms.p50, .ack_latency_ms.p90, .ack_latency_ms.p99, .ack_latency_ms.max, .latency_ms.p50, .latency_ms.p99, .msgs_per_sec, .lost] | @tsv' "$out" >>"$LATENCY"
	rm -rf "$data"
done

# --- 2. recovery of a large backlog --------------------------------------------
TOTAL=$((SESSIONS * BACKLOG))
data=$WORK/data.recovery
start_broker "$data"
EMPTY_READY_MS=$READY_MS
log "recovery: $SESSIONS persistent sessions x $BACKLOG queued QoS 1 messages"
loadtest "$WORK/fill.json" offline --phase fill --run-id durbench -S "$SESSIONS" -P 1 --count "$BACKLOG" --qos 1 --timeout 30m
FILL_S=$(jq -r '.elapsed_s' "$WORK/fill.json")
QUEUED_DELIVERIES=$(jq -r '.expected' "$WORK/fill.json")
[[ $QUEUED_DELIVERIES == "$TOTAL" ]] || die "fill queued $QUEUED_DELIVERIES deliveries, not $TOTAL"
FILL_HWM_KB=$(proc_field "$BROKER_PID" status VmHWM)
FILL_RSS_KB=$(proc_field "$BROKER_PID" status VmRSS)
FILL_WB=$(proc_field "$BROKER_PID" io write_bytes)
kill9_broker
DATA_BYTES=$(du -sb "$data" | cut -f1)
LOG_BYTES=$(find "$data" -path '*/wal/*' -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
SNAPSHOTS=$(find "$data" -name snapshot -type f | wc -l)
SNAP_BYTES=$(find "$data" -name snapshot -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')

RECOVERY=$WORK/recovery.tsv
: >"$RECOVERY"
for ((i = 1; i <= RESTARTS; i++)); do
	start_broker "$data"
	hwm=$(proc_field "$BROKER_PID" status VmHWM)
	rss=$(proc_field "$BROKER_PID" status VmRSS)
	printf '%d\t%d\t%d\n' "$READY_MS" "$hwm" "$rss" >>"$RECOVERY"
	log "recovery $i: ready after ${READY_MS} ms, VmHWM $((hwm / 1024)) MiB"
	if ((i < RESTARTS)); then kill9_broker; fi
done
log "draining the recovered backlog"
loadtest "$WORK/drain.json" offline --phase drain --run-id durbench -S "$SESSIONS" -P 1 --count "$BACKLOG" --qos 1 --drain 10s --timeout 30m
stop_broker
DRAIN_RECEIVED=$(jq -r '.received' "$WORK/drain.json")
DRAIN_LOST=$(jq -r '.lost' "$WORK/drain.json")
DRAIN_DUP=$(jq -r '.duplicated' "$WORK/drain.json")
DRAIN_RATE=$(jq -r '.backlog_msgs_per_sec' "$WORK/drain.json")
[[ $DRAIN_LOST == 0 ]] || log "warning: $DRAIN_LOST queued messages did not come back after the restarts"

# --- report ----------------------------------------------------------------------
ELAPSED=$(($(date +%s) - STARTED))
group() { # 1234567 -> 1,234,567
	local n
	n=$(printf '%.0f' "$1")
	while [[ $n =~ ^(-?[0-9]+)([0-9]{3}) ]]; do n="${BASH_REMATCH[1]},${BASH_REMATCH[2]}${n#"${BASH_REMATCH[1]}${BASH_REMATCH[2]}"}"; done
	echo "$n"
}
ms() { printf '%.2f' "$1"; }
one() { printf '%.1f' "$1"; }
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f MiB", k / 1024}'; }

cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
SECTION=$WORK/section.md
{
	echo "## Durability: what persistence costs, and recovery"
	echo
	echo "Generated by \`$command\` on $(date -u '+%Y-%m-%d %H:%M UTC') (took $((ELAPSED / 60))m$((ELAPSED % 60))s). Do not edit this section by hand: the next run replaces it."
	echo
	echo "- Machine: $(nproc) CPUs ($cpu_model), Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM; data directory on $DATA_FS ($DATA_DEV); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work may share the machine)."
	echo "- iotd $COMMIT, default --shards (one per CPU), --max-inflight $INFLIGHT --max-queued-messages $QUEUED so that no limit is what is measured; $PAYLOAD-byte payloads; the load generator is \`iotd loadtest\` on the same machine (each publisher keeps up to 100 QoS 1 messages unacknowledged; a subscriber at most 1000 published but not received)."
	echo "- Modes: **always** acknowledges a QoS 1/2 message only after every record it creates is fsynced (the default); **interval:1s** writes the records before acknowledging but fsyncs once a second (a power loss may take the last second; a process crash loses nothing); **off** keeps everything in memory."
	echo
	echo "### QoS 1 to persistent sessions"
	echo
	echo "Subscribers connect with clean session 0 (\`--persistent-sessions\`), so every delivery is logged: the message, its place in the session queue, its packet id in flight, its PUBACK. $DURATION of publishing per run. msg/s is deliveries per second; delivery latency is publish to delivery; ack latency is publish to the PUBACK the publisher gets, which with persistence waits for the log. Bytes per delivered message, from the broker's /proc/PID/io: *write()* is wchar, every byte it wrote, to sockets and to its log, so the log's share is the difference to the off row (sockets only); *to disk* is write_bytes, the bytes of page cache it dirtied, which the kernel writes to the device. *Data dir* is its size at the end of the run: the logs are snapshotted and truncated once a shard's log passes 64 MiB."
	echo
	echo "| scenario | fsync | msg/s | delivery p50 / p99 ms | PUBACK p50 / p99 ms | lost / dup | write() bytes / msg | to disk bytes / msg | data dir |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|--:|"
	while IFS=$'\t' read -r name mode rate lp50 lp99 ap50 ap99 recv lost dup wc wb du sent; do
		echo "| $name | $mode | $(group "$rate") | $(ms "$lp50") / $(ms "$lp99") | $(ms "$ap50") / $(ms "$ap99") | $lost / $dup | $(group "$wc") | $(group "$wb") | $(awk -v b="$du" 'BEGIN {printf "%.1f MiB", b / 1048576}') |"
	done <"$RESULTS"
	echo
	echo "### Acknowledgement latency at a fixed rate"
	echo
	echo "One publisher, one persistent subscriber, $(group "$RATE") msg/s, QoS 1: with no queue in the way, PUBACK latency is what the log adds."
	echo
	echo "| fsync | PUBACK p50 / p90 / p99 / max ms | delivery p50 / p99 ms | msg/s | lost |"
	echo "|---|--:|--:|--:|--:|"
	while IFS=$'\t' read -r mode ap50 ap90 ap99 amax lp50 lp99 rate lost; do
		echo "| $mode | $(ms "$ap50") / $(ms "$ap90") / $(ms "$ap99") / $(ms "$amax") | $(ms "$lp50") / $(ms "$lp99") | $(group "$rate") | $lost |"
	done <"$LATENCY"
	echo
	echo "### Recovery of $(group "$TOTAL") queued messages"
	echo
	rmed=$(cut -f1 "$RECOVERY" | median)
	hmax=$(cut -f2 "$RECOVERY" | sort -n | tail -n 1)
	rss=$(cut -f3 "$RECOVERY" | median)
	echo "$(group "$SESSIONS") persistent sessions subscribe at QoS 1 and go offline; one publisher sends $(group "$BACKLOG") messages (--fsync always), so each session queues all of them: $(group "$TOTAL") queued deliveries. Then iotd is killed with SIGKILL and started again on the same data directory, $RESTARTS time(s) (SIGKILL between restarts). Startup is timed from exec to the ready line (the state is loaded before the listeners accept); memory is the broker's VmHWM (peak RSS) from /proc/PID/status once it is ready."
	echo
	echo "| measure | value |"
	echo "|---|--:|"
	echo "| startup, empty data directory | $EMPTY_READY_MS ms |"
	echo "| startup with the backlog (median of $RESTARTS; all: $(cut -f1 "$RECOVERY" | paste -sd, - | sed 's/,/, /g') ms) | $(group "$rmed") ms |"
	echo "| recovery rate | $(group "$(awk -v n="$TOTAL" -v ms="$rmed" 'BEGIN {print (ms > 0 ? n / (ms / 1000) : 0)}')") queued messages/s |"
	echo "| peak memory (VmHWM) after recovery | $(mib "$hmax") |"
	echo "| resident memory (VmRSS) after recovery | $(mib "$rss") |"
	echo "| peak memory of the broker that queued the backlog | $(mib "$FILL_HWM_KB") (VmRSS $(mib "$FILL_RSS_KB")) |"
	echo "| time to queue the backlog | $(one "$FILL_S") s ($(group "$(awk -v n="$TOTAL" -v s="$FILL_S" 'BEGIN {print n / s}')") deliveries/s queued) |"
	echo "| data directory | $(awk -v b="$DATA_BYTES" 'BEGIN {printf "%.1f MiB", b / 1048576}'): logs $(awk -v b="$LOG_BYTES" 'BEGIN {printf "%.1f MiB", b / 1048576}'), $SNAPSHOTS snapshot(s) $(awk -v b="$SNAP_BYTES" 'BEGIN {printf "%.1f MiB", b / 1048576}') |"
	echo "| data directory per queued message | $(awk -v b="$DATA_BYTES" -v n="$TOTAL" 'BEGIN {printf "%.1f", b / n}') bytes |"
	echo "| bytes to disk (write_bytes) per queued message | $(awk -v b="$FILL_WB" -v n="$TOTAL" 'BEGIN {printf "%.1f", b / n}') |"
	echo "| after the restarts, drained | $(group "$DRAIN_RECEIVED") of $(group "$TOTAL") received, $DRAIN_LOST lost, $DRAIN_DUP duplicated, at $(group "$DRAIN_RATE") msg/s |"
} >"$SECTION"

if [[ ! -f $REPORT_MD ]]; then
	printf '# iotd benchmarks\n' >"$REPORT_MD"
fi
if grep -q '^<!-- durability:begin -->$' "$REPORT_MD" && grep -q '^<!-- durability:end -->$' "$REPORT_MD"; then
	awk -v section="$SECTION" '
		$0 == "<!-- durability:begin -->" { print; while ((getline line < section) > 0) print line; skip = 1; next }
		$0 == "<!-- durability:end -->" { skip = 0 }
		!skip { print }
	' "$REPORT_MD" >"$WORK/report.md"
else
	{ cat "$REPORT_MD"; echo; echo "<!-- durability:begin -->"; cat "$SECTION"; echo "<!-- durability:end -->"; } >"$WORK/report.md"
fi
cat "$WORK/report.md" >"$REPORT_MD"
log "wrote the durability section of $REPORT_MD"
cat "$SECTION"
