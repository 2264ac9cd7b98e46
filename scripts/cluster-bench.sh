#!/usr/bin/env bash
# cluster-bench.sh: single-node mode against the three-node loopback cluster
# in the same session, alternating them (BENCHMARKS.md "Cluster mode").
#
#   scripts/cluster-bench.sh [BIN] [WORK_DIR] [ROUNDS] [bench flags...]
#
# Each round starts a fresh single-node server, runs `shardlog bench` against
# it, stops it, then does the same with a fresh cluster (requests go to node
# 1). It prints every bench summary and, per server process, the CPU seconds
# (user + system, from /proc) and fdatasyncs (shardlog_fdatasync_duration_
# seconds_count from /metrics) the bench cost it. The bench flags default to
# PutRecords of 500 x 1 KiB on 4 shards with 4 clients for 10 s. Ports:
# PORT_BASE (default 5560) for the APIs, PORT_BASE+100 for Raft, so it does
# not collide with `make cluster-run`. WARMUP (e.g. 3s), if set, runs the
# bench that long first, unmeasured: it creates the stream and lets its
# groups elect their leaders (BENCHMARKS.md, "PutRecord at 256 shards").
# CLUSTER_ONLY=1 skips the single-node runs (A/B of two cluster builds). For
# a cluster, each node's Raft round timers (replica.RoundTimes, read from
# GET /_cluster/v1/status) are printed too: per round, the mean time of each
# stage, and the mean time from Propose to the answer. Needs curl, bc, jq
# and openssl.
set -euo pipefail

bin=${1:-bin/shardlog}
work=${2:-/tmp/shardlog-cluster-bench}
rounds=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
flags=("$@")
if [ ${#flags[@]} -eq 0 ]; then
	flags=(--op putrecords --shards 4 --clients 4 --batch 500 --record-size 1024 --duration 10s)
fi
base=${PORT_BASE:-5560}
pids=()

stop_all() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pids=()
}
trap stop_all EXIT

wait_up() { # url
	for _ in $(seq 1 300); do
		curl -s -o /dev/null "$1/metrics" && return 0
		sleep 0.1
	done
	echo "server at $1 did not come up" >&2
	return 1
}

cpu() { # pid: utime+stime in seconds
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

syncs() { # url
	curl -s "$1/metrics" | awk '$1 == "shardlog_fdatasync_duration_seconds_count" { print $2 }'
}

# The cluster runs with a token so that the status endpoint can be read
# (cluster.ForwardAuth: HMAC-SHA256 of "shardlog forwarding" under it).
token=cluster-bench-token
auth=$(printf 'shardlog forwarding' | openssl dgst -sha256 -hmac "$token" -r | cut -d' ' -f1)

times() { # url: the Raft host's cumulative round timers ({} when not a cluster node)
	curl -s -H "X-Shardlog-Cluster-Auth: $auth" "$1/_cluster/v1/status" 2>/dev/null |
		jq -c '.raft.times // {}' 2>/dev/null || echo '{}'
}

# rounds BEFORE AFTER SECONDS: per Ready round, the mean time of each stage
# (replica.RoundTimes), the share of the run the node spent in rounds, and
# the mean time from Propose to the answer of the proposals answered here.
rounds() {
	jq -nr --argjson a "$1" --argjson b "$2" --argjson s "$3" '
		def d(k): (($b[k] // 0) - ($a[k] // 0));
		def ms(k): (d(k) / 1e6);
		if ($b | length) == 0 then empty else
		(d("rounds")) as $n | (d("answered")) as $p |
		"rounds \($n) (\(($n / $s) | floor)/s, busy \((ms("roundNs") / 10 / $s) | floor)%), per round ms: " +
		"all \(if $n > 0 then (ms("roundNs") / $n * 100 | round / 100) else 0 end)" +
		" collect \(if $n > 0 then (ms("collectNs") / $n * 100 | round / 100) else 0 end)" +
		" early \(if $n > 0 then (ms("earlyNs") / $n * 100 | round / 100) else 0 end)" +
		" walWrite \(if $n > 0 then (ms("walWriteNs") / $n * 100 | round / 100) else 0 end)" +
		" walSync \(if $n > 0 then (ms("walSyncNs") / $n * 100 | round / 100) else 0 end)" +
		" after \(if $n > 0 then (ms("afterNs") / $n * 100 | round / 100) else 0 end)" +
		" complete \(if $n > 0 then (ms("completeNs") / $n * 100 | round / 100) else 0 end)" +
		"; proposals answered \($p), mean ms: propose to answer \(if $p > 0 then (ms("latencyNs") / $p * 100 | round / 100) else 0 end)" +
		" of which queued \(if $p > 0 then (ms("queuedNs") / $p * 100 | round / 100) else 0 end)" end'
}

# measure LABEL URL... : runs the bench against the first URL, and reports
# every listed server's CPU and fdatasyncs over it.
measure() {
	local label=$1 i
	shift
	local urls=("$@") c0=() s0=() t0=()
	if [ -n "${WARMUP:-}" ]; then
		"$bin" bench --endpoint "${urls[0]}" "${flags[@]}" --duration "$WARMUP" >/dev/null 2>&1
	fi
	for i in "${!urls[@]}"; do
		c0+=("$(cpu "${pids[$i]}")")
		s0+=("$(syncs "${urls[$i]}")")
		t0+=("$(times "${urls[$i]}")")
	done
	echo "== $label (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	local w0=$SECONDS
	"$bin" bench --endpoint "${urls[0]}" "${flags[@]}" 2>/dev/null
	local secs=$(( SECONDS - w0 ))
	for i in "${!urls[@]}"; do
		local c1 s1 t1
		c1=$(cpu "${pids[$i]}")
		s1=$(syncs "${urls[$i]}")
		t1=$(times "${urls[$i]}")
		echo "   server ${urls[$i]}: cpu $(echo "$c1 - ${c0[$i]}" | bc) s, fdatasyncs $(( ${s1:-0} - ${s0[$i]:-0} ))"
		rounds "${t0[$i]}" "$t1" "$(( secs > 0 ? secs : 1 ))" | sed 's/^/      /'
	done
}

for r in $(seq 1 "$rounds"); do
	rm -rf "$work/single" "$work/cluster"
	mkdir -p "$work"
	if [ -z "${CLUSTER_ONLY:-}" ]; then
		"$bin" serve --listen "127.0.0.1:$base" --data-dir "$work/single" --throttle=false --log-level warn \
			>"$work/single.log" 2>&1 &
		pids=($!)
		wait_up "http://127.0.0.1:$base"
		measure "round $r: single node" "http://127.0.0.1:$base"
		stop_all
	fi

	peers="1=127.0.0.1:$((base + 101)),2=127.0.0.1:$((base + 102)),3=127.0.0.1:$((base + 103))"
	urls=()
	for n in 1 2 3; do
		SHARDLOG_CLUSTER_TOKEN=$token "$bin" serve --cluster --node-id "$n" --peers "$peers" --listen "127.0.0.1:$((base + n))" \
			--data-dir "$work/cluster/node$n" --throttle=false --log-level warn \
			${CLUSTER_FLAGS:-} >"$work/node$n.log" 2>&1 &
		pids+=($!)
		urls+=("http://127.0.0.1:$((base + n))")
	done
	for u in "${urls[@]}"; do wait_up "$u"; done
	measure "round $r: three-node cluster (through node 1)" "${urls[@]}"
	stop_all
done
