#!/usr/bin/env bash
# cluster-run.sh: three `shardlog serve --cluster` nodes on 127.0.0.1
# (client APIs on ports 4567, 4568, 4569; Raft on 7101, 7102, 7103), each
# with its own data directory under one parent. Ctrl-C stops all three.
#
#   scripts/cluster-run.sh [BIN] [PARENT_DIR] [extra serve flags...]
#
# BIN defaults to bin/shardlog, PARENT_DIR to ./shardlog-cluster (node N's
# data in PARENT_DIR/nodeN, its log in PARENT_DIR/nodeN.log). Restarting
# the script over the same directory brings the same cluster back.
#
# CLUSTER_TLS=1 secures the Raft port with mutual TLS: a CA and one
# certificate per node are made with openssl into PARENT_DIR/tls (kept, and
# reused by the next run), as README "Security" shows. The nodes' requests
# to each other then go over mutual TLS to their internal listeners
# (https://127.0.0.1:7201, :7202, :7203).
set -euo pipefail

bin=${1:-bin/shardlog}
parent=${2:-shardlog-cluster}
shift $(( $# < 2 ? $# : 2 ))
peers=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
pids=()

stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait
	exit "${1:-0}"
}
trap stop INT TERM
trap 'stop 1' EXIT

# peer_certs makes the CA and node certificates in $1 unless they are there.
peer_certs() {
	local dir=$1 n
	[ -f "$dir/node3.crt" ] && return
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=shardlog peer CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
	for n in 1 2 3; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node$n" \
			-keyout "$dir/node$n.key" -out "$dir/node$n.csr" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/node$n.ext"
		openssl x509 -req -in "$dir/node$n.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
			-days 825 -extfile "$dir/node$n.ext" -out "$dir/node$n.crt" 2>/dev/null
	done
}

mkdir -p "$parent"
[ "${CLUSTER_TLS:-}" = 1 ] && peer_certs "$parent/tls"
for n in 1 2 3; do
	tls=()
	if [ "${CLUSTER_TLS:-}" = 1 ]; then
		tls=(--peer-tls-cert "$parent/tls/node$n.crt" --peer-tls-key "$parent/tls/node$n.key" --peer-tls-ca "$parent/tls/ca.crt"
			--advertise "https://127.0.0.1:$((7200 + n))")
	fi
	"$bin" serve --cluster --node-id "$n" --peers "$peers" \
		--listen "127.0.0.1:$((4566 + n))" --data-dir "$parent/node$n" "${tls[@]}" "$@" \
		>"$parent/node$n.log" 2>&1 &
	pids+=($!)
done
echo "cluster: nodes 1-3 on http://127.0.0.1:4567, :4568, :4569 (logs in $parent/node*.log); Ctrl-C stops them"
# Any node exiting (a bad flag, a port in use) stops the others too.
wait -n "${pids[@]}" || true
echo "cluster: a node exited; stopping the others" >&2
tail -n 5 "$parent"/node*.log >&2
stop 1
