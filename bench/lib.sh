# bench/lib.sh: shell functions shared by the bench scripts (sourced).
# compare.sh and durability.sh set BENCH (their make target, for die),
# KEEP, BUILD_FROM and PORT_BASE/PORT_END (their port range) before use.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$BENCH: $*"; exit 1; }

# repro_command BASE VAR...: BASE prefixed with VAR='value' for every VAR
# set in the environment, i.e. the command that reproduces this run.
repro_command() {
	local cmd=$1 v
	shift
	for v in "$@"; do
		if [[ -n ${!v+x} ]] && env | grep -q "^$v="; then
			cmd="$v='${!v}' $cmd"
		fi
	done
	printf '%s\n' "$cmd"
}

# make_work PREFIX KEPT: create the temporary directory WORK. On exit the
# broker is stopped and WORK removed, unless KEEP=1 or the script failed:
# then it stays, and the log says "KEPT kept in WORK".
make_work() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	WORK_KEPT=$2
	BROKER_PID=""
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

cleanup() {
	local rc=$?
	stop_broker
	if [[ $KEEP == 1 || $rc != 0 ]]; then
		log "$WORK_KEPT kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}

# build_iotd [NOTE]: build iotd, from the committed HEAD exported to
# $WORK/src so that others' uncommitted edits in a shared work tree are not
# what gets measured (BUILD_FROM=worktree measures the work tree as it is).
# Sets SRC (the source tree), COMMIT and IOTD, a private copy of the binary:
# a rebuild of bin/iotd mid-run changes nothing. NOTE is added to the log
# line.
build_iotd() {
	if [[ $BUILD_FROM == head ]] && git rev-parse --verify -q HEAD >/dev/null 2>&1; then
		SRC=$WORK/src
		mkdir -p "$SRC"
		git archive HEAD | tar -x -C "$SRC"
		COMMIT=$(git rev-parse --short HEAD)
		if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
			log "the work tree has uncommitted changes: measuring HEAD $COMMIT without them (BUILD_FROM=worktree to include them)"
		fi
	else
		SRC=$ROOT
		COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
	fi
	log "building iotd $COMMIT${1:-}"
	make -s -C "$SRC" build VERSION="$COMMIT" >&2
	cp "$SRC/bin/iotd" "$WORK/iotd"
	IOTD=$WORK/iotd
}

# port_open PORT: whether something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port sets PORT to the next port in [PORT_BASE, PORT_END) nobody
# listens on (a fresh one per start, so no run meets the previous one's
# TIME_WAIT sockets).
NEXT_PORT=""
PORT=""
free_port() {
	NEXT_PORT=${NEXT_PORT:-$PORT_BASE}
	while :; do
		NEXT_PORT=$((NEXT_PORT + 1))
		((NEXT_PORT < PORT_END)) || NEXT_PORT=$PORT_BASE
		if ! port_open "$NEXT_PORT"; then
			PORT=$NEXT_PORT
			return
		fi
	done
}

# wait_broker MSG TRIES PAUSE CHECK...: run CHECK every PAUSE seconds, at
# most TRIES times, until it succeeds. If it never does, or the broker in
# BROKER_PID exits first, log MSG and the tail of BROKER_LOG, stop the
# broker and fail.
wait_broker() {
	local msg=$1 tries=$2 pause=$3 i
	shift 3
	for ((i = 0; i < tries; i++)); do
		"$@" && return 0
		kill -0 "$BROKER_PID" 2>/dev/null || break
		sleep "$pause"
	done
	log "$msg; its log:"
	tail -n 20 "$BROKER_LOG" >&2 || true
	stop_broker
	return 1
}

# stop_broker: SIGTERM the broker in BROKER_PID, wait up to 10 s for a clean
# exit, then SIGKILL, so no run leaves a broker behind.
stop_broker() {
	[[ -n $BROKER_PID ]] || return 0
	local pid=$BROKER_PID i
	BROKER_PID=""
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
