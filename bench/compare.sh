#!/usr/bin/env bash
# bench/compare.sh: iotd, mochi-mqtt v2 and Mosquitto side by side on this
# machine (`make bench-compare`). It builds iotd and a tiny mochi-mqtt
# broker (bench/mochi, its own module), installs Mosquitto when missing,
# and runs the same scenarios against each broker on 127.0.0.1, brokers
# alternating A B C per round, each broker started fresh for every run, in
# two modes: unpinned, and pinned (broker on CPU 0, load generator on CPU 1).
# Then iotd alone against --shards 1, 2, 4, 8. Raw records and medians go to
# bench/results/<timestamp>.{raw.json,json}; the tables replace the
# bench-compare section of BENCHMARKS.md (bench/report).
#
# Knobs (environment):
#   ROUNDS=3        rounds per cell (the tables show medians)
#   DURATION=5s     publishing time per run
#   QUICK=1         smoke test: 1 round of 2s
#   MODES="unpinned pinned"   which modes to run
#   CELLS=REGEX     run only the cells whose name matches (e.g. 'fanin|connect-10000')
#   SHARDS="1 2 4 8"          iotd --shards values; empty skips the scaling table
#   BROKERS="iotd mochi mosquitto"
#   KEEP=1          keep the temporary directory with every broker's log
#   REPORT_MD=BENCHMARKS.md   the Markdown file the tables go into (a scratch
#                   file keeps a debugging run out of BENCHMARKS.md)
#   BUILD_FROM=head build iotd from the committed HEAD; "worktree" builds the
#                   work tree with its uncommitted changes
#
# Everything listens and connects on 127.0.0.1 only; every run is bounded
# by --duration and --timeout; every broker started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	ROUNDS=${ROUNDS:-1}
	DURATION=${DURATION:-2s}
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
MODES=${MODES:-unpinned pinned}
CELLS=${CELLS:-.}
SHARDS=${SHARDS-1 2 4 8}
BROKERS=${BROKERS:-iotd mochi mosquitto}
KEEP=${KEEP:-0}
BUILD_FROM=${BUILD_FROM:-head}
REPORT_MD=${REPORT_MD:-BENCHMARKS.md}

# The same limits for every broker: far above what the bounded end-to-end
# window (E2E_WINDOW messages per subscriber) can ever fill.
INFLIGHT=65535   # unacknowledged QoS 1/2 messages per client (the MQTT maximum)
QUEUED=100000    # QoS 1/2 messages queued per session
E2E_WINDOW=1000  # messages a subscriber may have published-but-not-received
PUB_INFLIGHT=100 # each publisher's window of unacknowledged QoS 1/2 messages
HOLD=5s          # connect: how long connections are held idle
PAYLOAD=64

BENCH=bench-compare
PORT_BASE=${PORT_BASE:-21883}
PORT_END=29000

# --- the command that reproduces this run -----------------------------------
command=$(repro_command "make bench-compare" QUICK ROUNDS DURATION MODES CELLS SHARDS BROKERS BUILD_FROM)

# --- limits -------------------------------------------------------------------
hard=$(ulimit -Hn)
ulimit -n "$hard" || die "cannot raise the open-file limit to the hard limit $hard"
if [[ $hard != unlimited && $hard -lt 19100 ]]; then
	log "warning: open-file limit is $hard; the 19,000-connection cells will fail (raise the hard limit: ulimit -Hn)"
fi
CLK_TCK=$(getconf CLK_TCK)
command -v taskset >/dev/null || die "taskset is missing (Debian package util-linux)"
NPROC=$(nproc)
if [[ $NPROC -lt 2 && $MODES == *pinned* ]]; then
	log "warning: $NPROC CPU: pinned mode needs 2; running unpinned only"
	MODES=unpinned
fi

# --- Mosquitto ------------------------------------------------------------------
find_mosquitto() { command -v mosquitto || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; } || true; }
MOSQUITTO=$(find_mosquitto)
if [[ $BROKERS == *mosquitto* && -z $MOSQUITTO ]]; then
	log "installing Mosquitto (apt-get install mosquitto)"
	sudo=""
	[[ $(id -u) == 0 ]] || sudo=sudo
	if ! $sudo apt-get install -y --no-install-recommends mosquitto >&2; then
		$sudo apt-get update >&2
		$sudo apt-get install -y --no-install-recommends mosquitto >&2
	fi
	MOSQUITTO=$(find_mosquitto)
	[[ -n $MOSQUITTO ]] || die "mosquitto is still not on PATH after apt-get install"
	# The package may start its own service on 1883; ours use other ports.
fi

# --- build ----------------------------------------------------------------------
make_work iotd-bench "broker logs and run output"
build_iotd " (make build) and bench/mochi"
(cd "$SRC/bench/mochi" && CGO_ENABLED=0 go build -trimpath -o "$WORK/mochi" .)
MOCHI=$WORK/mochi
(cd "$SRC" && go build -o "$WORK/report" ./bench/report)

IOTD_HELP=$("$IOTD" serve --help 2>&1)
IOTD_EXTRA=()
# iotd's default keeps persistent sessions in a WAL; the benchmark's clients
# all use clean sessions, which never touch it (nothing is fsynced).
IOTD_DURABILITY="persistence on (the default), though clean sessions, as all clients here use, write nothing to disk"
if grep -q -- '--persistence' <<<"$IOTD_HELP"; then
	IOTD_EXTRA+=(--persistence=off)
	IOTD_DURABILITY="--persistence=off: in memory, like the others"
fi
DATA_FS=$(stat -f -c %T "$WORK")
if [[ ${IOTD_EXTRA[*]-} != *persistence=off* ]]; then IOTD_DURABILITY+="; data dir on $DATA_FS"; fi

# --- brokers --------------------------------------------------------------------
BROKER_LOG=""
# start_broker NAME MODE [SHARDS]: start one broker on a fresh port (free_port
# in bench/lib.sh), pinned
# to CPU 0 in pinned mode; sets BROKER_PID and PORT. Fails when it does not
# accept connections within 10 s.
start_broker() {
	local name=$1 mode=$2 shards=${3:-} pin=()
	if [[ $mode == pinned ]]; then pin=(taskset -c 0); fi
	free_port
	BROKER_LOG=$WORK/$name.$PORT.log
	case $name in
	iotd)
		local args=(--listen "tcp://127.0.0.1:$PORT" --data-dir "$WORK/data.$PORT"
			--max-inflight "$INFLIGHT" --max-queued-messages "$QUEUED" --log-level warn)
		if [[ -n $shards ]]; then args+=(--shards "$shards"); fi
		"${pin[@]}" "$IOTD" serve "${args[@]}" "${IOTD_EXTRA[@]}" >"$BROKER_LOG" 2>&1 &
		;;
	mochi)
		"${pin[@]}" "$MOCHI" -addr "127.0.0.1:$PORT" -max-inflight "$INFLIGHT" >"$BROKER_LOG" 2>&1 &
		;;
	mosquitto)
		local conf=$WORK/mosquitto.$PORT.conf
		cat >"$conf" <<-EOF
			listener $PORT 127.0.0.1
			allow_anonymous true
			persistence false
			max_connections -1
			max_inflight_messages $INFLIGHT
			max_queued_messages $QUEUED
			max_queued_bytes 0
			set_tcp_nodelay true
			log_dest stderr
			log_type error
			log_type warning
		EOF
		"${pin[@]}" "$MOSQUITTO" -c "$conf" >"$BROKER_LOG" 2>&1 &
		;;
	*) die "unknown broker $name" ;;
	esac
	BROKER_PID=$!
	wait_broker "$name did not start on 127.0.0.1:$PORT" 200 0.05 port_open "$PORT"
}

# stop_broker comes from bench/lib.sh.

# cpu_ticks PID: user+system CPU time of PID in clock ticks.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	# Fields after "pid (comm) ": state is 1st, utime 12th, stime 13th.
	awk '{print $12 + $13}' <<<"${stat##*) }"
}

version_of() {
	case $1 in
	iotd) "$IOTD" --version | awk '{print $NF}' ;;
	mochi) "$MOCHI" -version | awk '{print $NF}' ;;
	mosquitto) "$MOSQUITTO" -h 2>/dev/null | awk '/^mosquitto version/ {print $3; exit}' ;;
	esac
}

# json_str S: S as a JSON string.
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/ }
	s=${s//$'\n'/ }
	printf '"%s"' "$s"
}

# --- cells ----------------------------------------------------------------------
# name|loadtest arguments (without --addr/--json/--duration)
ALL_CELLS=(
	"fanin-q0|fanin -P 10 -S 1 --qos 0"
	"fanin-q1|fanin -P 10 -S 1 --qos 1"
	"fanin-q2|fanin -P 10 -S 1 --qos 2"
	"fanout-q0|fanout -P 1 -S 50 --qos 0"
	"fanout-q1|fanout -P 1 -S 50 --qos 1"
	"fanout-q2|fanout -P 1 -S 50 --qos 2"
	"pairs-q0|pairs --clients 100 --qos 0"
	"pairs-q1|pairs --clients 100 --qos 1"
	"pairs-q2|pairs --clients 100 --qos 2"
	"latency-q0|latency -P 1 -S 1 --rate 5000 --qos 0"
	"latency-q1|latency -P 1 -S 1 --rate 5000 --qos 1"
	"connect-10000|connect --clients 10000"
	"connect-19000|connect --clients 19000"
)
CELL_LIST=()
for c in "${ALL_CELLS[@]}"; do
	[[ ${c%%|*} =~ $CELLS ]] && CELL_LIST+=("$c")
done
SHARD_CELLS=("fanin-q0|fanin -P 10 -S 1 --qos 0" "pairs-q1|pairs --clients 100 --qos 1")

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
RAW=bench/results/$STAMP.raw.json
: >"$RAW"
RUNS_TOTAL=0
RUN_N=0
read -ra mode_arr <<<"$MODES"
read -ra broker_arr <<<"$BROKERS"
read -ra shard_arr <<<"$SHARDS"
RUNS_TOTAL=$((ROUNDS * (${#mode_arr[@]} * ${#CELL_LIST[@]} * ${#broker_arr[@]})))
for c in "${SHARD_CELLS[@]}"; do
	[[ ${c%%|*} =~ $CELLS ]] && RUNS_TOTAL=$((RUNS_TOTAL + ROUNDS * ${#shard_arr[@]}))
done

# run_cell MODE ROUND CELL BROKER [SHARDS]: one fresh broker, one load-test
# run, one raw record.
run_cell() {
	local mode=$1 round=$2 spec=$3 broker=$4 shards=${5:-}
	local cell=${spec%%|*} args pin=() note="" clients=0 rc=0 t0=-1 t1=-1 ticks=-1
	read -ra args <<<"${spec#*|}"
	if [[ $mode == pinned ]]; then pin=(taskset -c 1); fi
	RUN_N=$((RUN_N + 1))
	log "[$RUN_N/$RUNS_TOTAL] $mode round $round: $cell on $broker${shards:+ --shards $shards}"
	local out=$WORK/run.$RUN_N.json load1
	load1=$(cut -d' ' -f1 /proc/loadavg)
	if ! start_broker "$broker" "$mode" "$shards"; then
		note="$broker did not start"
		: >"$out"
	else
		if [[ ${args[0]} == connect ]]; then
			clients=${args[2]}
			args+=(--connect-parallelism 64 --hold "$HOLD" --broker-pid "$BROKER_PID" --timeout 4m)
		else
			args+=(--payload "$PAYLOAD" --duration "$DURATION" --inflight "$PUB_INFLIGHT" --e2e-window "$E2E_WINDOW")
		fi
		t0=$(cpu_ticks "$BROKER_PID") || t0=-1
		"${pin[@]}" "$IOTD" loadtest "${args[@]}" --addr "127.0.0.1:$PORT" --json >"$out" 2>"$WORK/run.$RUN_N.progress" || rc=$?
		if t1=$(cpu_ticks "$BROKER_PID") && kill -0 "$BROKER_PID" 2>/dev/null; then
			if [[ $t0 -ge 0 ]]; then ticks=$((t1 - t0)); fi
		else
			note="$broker exited during the run: $(tail -n 3 "$BROKER_LOG" | tr '\n' ' ')"
		fi
		stop_broker
	fi
	if [[ ! -s $out && -z $note ]]; then
		note="load generator exited $rc without a result: $(tail -n 2 "$WORK/run.$RUN_N.progress" | tr '\n' ' ')"
	fi
	{
		printf '{"kind":"run","mode":"%s","round":%d,"cell":"%s","broker":"%s","shards":%d,"clients":%d,"cpu_ticks":%d,"clk_tck":%d,"exit":%d,"note":%s,"load1":%s' \
			"$mode" "$round" "$cell" "$broker" "${shards:-0}" "$clients" "$ticks" "$CLK_TCK" "$rc" "$(json_str "$note")" "$load1"
		if [[ -s $out ]]; then
			printf ',"result":'
			cat "$out"
		fi
		printf '}\n'
	} >>"$RAW"
	if [[ -s $out ]]; then
		# One line for the person watching.
		tr -d ' \n' <"$out" | grep -oE '"(msgs_per_sec|lost|duplicated|connects_per_sec|broker_rss_per_conn_bytes|failure)":("[^"]*"|[0-9.e+-]+)' | tr '\n' ' ' >&2 || true
		printf ' cpu=%s ticks\n' "$ticks" >&2
	fi
	[[ -z $note ]] || log "  $note"
}

# --- run --------------------------------------------------------------------------
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "$RUNS_TOTAL runs: ${ROUNDS} round(s) x ${#CELL_LIST[@]} cells x brokers ($BROKERS) x modes ($MODES), $DURATION each; raw records in $RAW"

for mode in "${mode_arr[@]}"; do
	for ((round = 1; round <= ROUNDS; round++)); do
		for spec in "${CELL_LIST[@]}"; do
			for broker in "${broker_arr[@]}"; do
				run_cell "$mode" "$round" "$spec" "$broker"
			done
		done
	done
done
if [[ ${#shard_arr[@]} -gt 0 ]]; then
	for ((round = 1; round <= ROUNDS; round++)); do
		for spec in "${SHARD_CELLS[@]}"; do
			[[ ${spec%%|*} =~ $CELLS ]] || continue
			for s in "${shard_arr[@]}"; do
				run_cell shards "$round" "$spec" iotd "$s"
			done
		done
	done
fi

# --- report -------------------------------------------------------------------------
elapsed=$(($(date +%s) - START))
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
versions="" durability="" limits="" brokers_json=""
for b in "${broker_arr[@]}"; do
	versions+="$(json_str "$b"):$(json_str "$(version_of "$b")"),"
	brokers_json+="$(json_str "$b"),"
	case $b in
	iotd)
		durability+="$(json_str "$b"):$(json_str "$IOTD_DURABILITY"),"
		limits+="$(json_str "$b"):$(json_str "--max-inflight $INFLIGHT --max-queued-messages $QUEUED, --shards at its default of one per CPU it may use (2 unpinned, 1 pinned) except in the --shards table"),"
		;;
	mochi)
		durability+="$(json_str "$b"):$(json_str "no persistence hook: in memory"),"
		limits+="$(json_str "$b"):$(json_str "MaximumInflight and ReceiveMaximum $INFLIGHT, MaximumClientWritesPending 8192, 64 KiB write buffer"),"
		;;
	mosquitto)
		durability+="$(json_str "$b"):$(json_str "persistence false: in memory"),"
		limits+="$(json_str "$b"):$(json_str "max_inflight_messages $INFLIGHT, max_queued_messages $QUEUED, max_queued_bytes 0, max_connections -1, set_tcp_nodelay true"),"
		;;
	esac
done
printf '{"kind":"meta","meta":{"date":%s,"command":%s,"commit":%s,"nproc":%d,"cpu_model":%s,"kernel":%s,"loadavg_start":%s,"loadavg_end":%s,"rounds":%d,"duration":%s,"e2e_window":%d,"inflight":%d,"queued":%d,"publisher_inflight":%d,"brokers":[%s],"versions":{%s},"durability":{%s},"limits":{%s},"elapsed":%s,"port_range":%s}}\n' \
	"$(json_str "$(date -u '+%Y-%m-%d %H:%M UTC')")" "$(json_str "$command")" "$(json_str "$COMMIT")" \
	"$NPROC" "$(json_str "$cpu_model")" "$(json_str "$(uname -r)")" "$(json_str "$LOAD_START")" "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" \
	"$ROUNDS" "$(json_str "$DURATION")" "$E2E_WINDOW" "$INFLIGHT" "$QUEUED" "$PUB_INFLIGHT" \
	"${brokers_json%,}" "${versions%,}" "${durability%,}" "${limits%,}" "$(json_str "$((elapsed / 60))m$((elapsed % 60))s")" "$(json_str "$(tr -s '\t ' ' ' </proc/sys/net/ipv4/ip_local_port_range)")" >>"$RAW"

"$WORK/report" -raw "$RAW" -json "bench/results/$STAMP.json" -md "$REPORT_MD"
log "done in $((elapsed / 60))m$((elapsed % 60))s: $REPORT_MD (bench-compare section), bench/results/$STAMP.json"
