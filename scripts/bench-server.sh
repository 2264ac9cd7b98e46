#!/usr/bin/env bash
# Server cost per record (issue 16): starts a server on a fresh temporary
# data directory with --throttle=false, runs the issue's workloads against it
# with `shardlog bench --server-pid --server-cpu`, and prints one table row
# per workload (and the server's peak RSS at the end): server CPU µs per record (utime+stime from /proc), records/s,
# fdatasyncs and records per sync (the server's own
# shardlog_fdatasync_duration_seconds_count), and the flushes the data
# directory's block device completed meanwhile (/sys/block/DEV/stat field 16:
# what the disk actually did after the kernel merged concurrent syncs; the
# whole device, so other writers on it count too).
#
#   BIN         shardlog binary (default bin/shardlog; `make bench-server` builds it)
#   SERVER_BIN  the server binary, if another (A/B runs; default BIN)
#   DURATION    each workload's length (default 12s)
#   SERVE_ARGS  extra `serve` flags, e.g. "--gomaxprocs 2"
#   KINESALITE  path of kinesalite's cli.js: run the same workloads against it too
#               (npm install kinesalite; CPU from /proc, no sync count)
#   WORKLOADS   subset of: p4 p256 batch get (default all four; get reads batch's stream)
# Needs jq and curl.
set -euo pipefail

BIN=${BIN:-bin/shardlog}
SERVER_BIN=${SERVER_BIN:-$BIN}
DURATION=${DURATION:-12s}
WORKLOADS=${WORKLOADS:-p4 p256 batch get}
PORT=${PORT:-4611}
EP=http://127.0.0.1:$PORT
DEV=$(basename "$(findmnt -no SOURCE --target /tmp 2>/dev/null || true)")

# flushes prints the block device's completed flush requests (0 if unknown).
flushes() {
	awk '{print (NF >= 16) ? $16 : 0}' "/sys/block/$DEV/stat" 2>/dev/null || echo 0
}

workload_args() {
	case $1 in
	p4) echo "--stream p4 --shards 4 --op putrecord --clients 64" ;;
	p256) echo "--stream p256 --shards 256 --op putrecord --clients 64" ;;
	batch) echo "--stream batch --shards 4 --op putrecords --clients 4 --batch 500" ;;
	get) echo "--stream batch --shards 4 --op getrecords --clients 4" ;;
	esac
}

describe() {
	case $1 in
	p4) echo "PutRecord, 64 clients, 4 shards" ;;
	p256) echo "PutRecord, 64 clients, 256 shards" ;;
	batch) echo "PutRecords 500 x 1 KiB, 4 clients, 4 shards" ;;
	get) echo "GetRecords (pages of 10,000), 4 clients, 4 shards" ;;
	esac
}

wait_ready() {
	for _ in $(seq 100); do
		curl -s -o /dev/null "$EP/" && return 0
		sleep 0.1
	done
	echo "server on $EP did not start" >&2
	return 1
}

# run_all NAME PID COSTFLAGS: every workload against the server on $EP.
run_all() {
	local name=$1 pid=$2 costflags=$3 w out f0 f1
	for w in $WORKLOADS; do
		f0=$(flushes)
		# shellcheck disable=SC2046
		out=$("$BIN" bench --endpoint "$EP" $(workload_args "$w") --record-size 1024 --duration "$DURATION" \
			--server-pid "$pid" $costflags --json 2>/dev/null)
		f1=$(flushes)
		jq -r --arg name "$name" --arg w "$(describe "$w")" --argjson fl $((f1 - f0)) '.results[] |
			[$name, $w, (.records_per_s|floor), (.server.cpu_us_per_record*10|round/10),
			 (if .server.syncs < 0 then "-" else .server.syncs end),
			 (if (.server.records_per_sync // 0) == 0 then "-" else (.server.records_per_sync*10|round/10) end),
			 $fl, (if $fl == 0 then "-" else (.records/$fl*10|round/10) end),
			 .latency_ms.p50, .errors + .throttled] | "| " + join(" | ") + " |"' <<<"$out"
	done
}

stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

echo "| server | workload | records/s | server CPU µs/record | fdatasyncs | records/sync | device flushes | records/flush | p50 ms | errors+throttled |"
echo "|---|---|---|---|---|---|---|---|---|---|"

DIR=$(mktemp -d /tmp/shardlog-bench.XXXXXX)
# shellcheck disable=SC2086
"$SERVER_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DIR" --throttle=false --log-level warn \
	--create-stream-delay 0 --console=false ${SERVE_ARGS:-} &
SPID=$!
trap 'stop $SPID; rm -rf "$DIR"' EXIT
wait_ready
run_all shardlog "$SPID" --server-cpu
# The server's peak resident memory over every workload (VmHWM), for the
# issue's "no regression in RSS".
echo "shardlog peak RSS: $(awk '/^VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$SPID/status")"
stop "$SPID"
rm -rf "$DIR"
trap - EXIT

if [[ -n ${KINESALITE:-} ]]; then
	node "$KINESALITE" --port "$PORT" --shardLimit 1000 --createStreamMs 0 >/dev/null &
	KPID=$!
	trap 'stop $KPID' EXIT
	wait_ready
	run_all kinesalite "$KPID" ""
	stop "$KPID"
	trap - EXIT
fi
