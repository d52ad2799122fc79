# bench/lib.sh: shell functions shared by the bench scripts (sourced).

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
