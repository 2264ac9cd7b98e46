#!/usr/bin/env bash
# End-to-end check of shardlog with the AWS CLI v2 (Debian package awscli,
# /usr/bin/aws). It builds bin/shardlog, serves a temporary data directory on
# a free loopback port, drives create-stream, the stream-exists wait,
# put-record, put-records, list-shards, get-shard-iterator, get-records,
# describe-stream-summary and delete-stream, and checks every answer.
#
# Prints one line per check and, last, "N passed, M failed"; exits non-zero
# if any check failed.
#
# Environment:
#   SHARDLOG_CLI_OPTIONAL=1  without /usr/bin/aws, skip (exit 0) instead of failing
#   SHARDLOG_ENDPOINT=URL    use a server that is already running (no build, no start)
#   SHARDLOG_JSON=python     parse JSON with python3 even if jq is installed
set -u

# /usr/bin/aws explicitly: the first `aws` on PATH may be a v1 shim (pyenv),
# whose blob handling and output differ.
AWS=/usr/bin/aws
cd "$(dirname "$0")/.."

pass=0
fail=0
summary() { echo "$pass passed, $fail failed"; }

if [ ! -x "$AWS" ]; then
	echo "cli-e2e: $AWS not found; install the AWS CLI v2 with: apt-get install -y awscli"
	if [ "${SHARDLOG_CLI_OPTIONAL:-}" = 1 ]; then
		summary
		exit 0
	fi
	exit 1
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Isolate the CLI from the user's profile, pager and instance metadata.
export AWS_ACCESS_KEY_ID=AKIDSHARDLOGE2E AWS_SECRET_ACCESS_KEY=shardlog-e2e-secret
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true AWS_CLI_AUTO_PROMPT=off
unset AWS_PROFILE AWS_SESSION_TOKEN

# --- JSON access: jv FILE PATH, PATH a jq path such as .A.B[0].C or .A|length

if command -v jq >/dev/null 2>&1 && [ "${SHARDLOG_JSON:-}" != python ]; then
	jv() { jq -r "$2" "$1" 2>/dev/null; }
else
	jv() {
		python3 - "$1" "$2" <<'PY' 2>/dev/null
import json, re, sys
path, length = sys.argv[2], False
if path.endswith("|length"):
    path, length = path[: -len("|length")], True
v = json.load(open(sys.argv[1]))
for key, idx in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
    v = (v.get(key) if isinstance(v, dict) else None) if key else (v[int(idx)] if isinstance(v, list) and int(idx) < len(v) else None)
if length:
    v = len(v) if v is not None else 0
if v is None:
    print("null")
elif isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (dict, list)):
    print(json.dumps(v))
else:
    print(v)
PY
	}
fi

# --- checks

check() { # check NAME COMMAND...: one line per check, then why it failed
	local name=$1 why
	shift
	if why=$("$@"); then
		pass=$((pass + 1))
		echo "ok   $name"
	else
		fail=$((fail + 1))
		echo "FAIL $name"
		[ -z "$why" ] || echo "$why"
	fi
}
eq() { [ "$1" = "$2" ] || { echo "     got '$1', want '$2'"; return 1; }; }
matches() { [[ $1 =~ $2 ]] || { echo "     got '$1', want /$2/"; return 1; }; }
succeeded() { [ "$rc" -eq 0 ] || { echo "     exit $rc: $(head -c 500 "$tmp/err")"; return 1; }; }

# kin ARGS...: one CLI call; the answer goes to $tmp/out, stderr to $tmp/err,
# the exit status to $rc. Blob arguments are raw text, not base64.
kin() {
	"$AWS" --endpoint-url "$endpoint" --output json --cli-binary-format raw-in-base64-out \
		kinesis "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# --- the server

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

healthy() { curl -fsS -o /dev/null --max-time 1 "$endpoint/health" 2>/dev/null; }

start_server() {
	echo "building bin/shardlog"
	go build -o bin/shardlog ./cmd/shardlog || { echo "cli-e2e: build failed"; fail=$((fail + 1)); summary; exit 1; }
	local port
	port=$(free_port)
	endpoint="http://127.0.0.1:$port"
	bin/shardlog serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" \
		--create-stream-delay 200ms --delete-stream-delay 200ms >"$tmp/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		healthy && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "cli-e2e: the server did not become healthy at $endpoint:"
	tail -n 20 "$tmp/server.log"
	fail=$((fail + 1))
	summary
	exit 1
}

if [ -n "${SHARDLOG_ENDPOINT:-}" ]; then
	endpoint=$SHARDLOG_ENDPOINT
else
	start_server
fi
echo "$("$AWS" --version 2>&1) against $endpoint"

# --- the scenario

stream="cli-e2e-$$"
max_hash=340282366920938463463374607431768211455
mid_hash=170141183460469231731687303715884105727

kin create-stream --stream-name "$stream" --shard-count 2
check "create-stream $stream with 2 shards" succeeded
check "create-stream answers nothing" eq "$(cat "$tmp/out")" ""

kin wait stream-exists --stream-name "$stream"
check "wait stream-exists" succeeded

kin put-record --stream-name "$stream" --partition-key pk-0 --data "record zero"
check "put-record" succeeded
check "put-record: SequenceNumber is 56 digits" matches "$(jv "$tmp/out" .SequenceNumber)" '^[0-9]{56}$'
check "put-record: ShardId" matches "$(jv "$tmp/out" .ShardId)" '^shardId-00000000000[01]$'

kin put-records --stream-name "$stream" --records \
	'[{"Data":"record one","PartitionKey":"pk-1"},{"Data":"record two","PartitionKey":"pk-2"},{"Data":"record three","PartitionKey":"pk-3"}]'
check "put-records with 3 records" succeeded
check "put-records: FailedRecordCount 0" eq "$(jv "$tmp/out" .FailedRecordCount)" 0
check "put-records: 3 results" eq "$(jv "$tmp/out" '.Records|length')" 3
for i in 0 1 2; do
	check "put-records: result $i has a 56-digit SequenceNumber and a ShardId" matches \
		"$(jv "$tmp/out" ".Records[$i].SequenceNumber") $(jv "$tmp/out" ".Records[$i].ShardId")" \
		'^[0-9]{56} shardId-00000000000[01]$'
done

kin list-shards --stream-name "$stream"
check "list-shards" succeeded
check "list-shards: 2 shards" eq "$(jv "$tmp/out" '.Shards|length')" 2
check "list-shards: shard 0 id and hash range" eq \
	"$(jv "$tmp/out" .Shards[0].ShardId) $(jv "$tmp/out" .Shards[0].HashKeyRange.StartingHashKey)..$(jv "$tmp/out" .Shards[0].HashKeyRange.EndingHashKey)" \
	"shardId-000000000000 0..$mid_hash"
check "list-shards: shard 1 id and hash range" eq \
	"$(jv "$tmp/out" .Shards[1].ShardId) $(jv "$tmp/out" .Shards[1].HashKeyRange.StartingHashKey)..$(jv "$tmp/out" .Shards[1].HashKeyRange.EndingHashKey)" \
	"shardId-000000000001 170141183460469231731687303715884105728..$max_hash"

# read_shard SHARD: TRIM_HORIZON, then one get-records; appends
# "partition-key=data" lines, data base64-decoded, to $tmp/read.
read_shard() {
	kin get-shard-iterator --stream-name "$stream" --shard-id "$1" --shard-iterator-type TRIM_HORIZON
	check "get-shard-iterator $1 TRIM_HORIZON" succeeded
	local iter
	iter=$(jv "$tmp/out" .ShardIterator)
	check "get-shard-iterator $1: an iterator" matches "$iter" '^[A-Za-z0-9+/=_-]{16,}$'
	kin get-records --shard-iterator "$iter"
	check "get-records $1" succeeded
	check "get-records $1: NextShardIterator and MillisBehindLatest 0" matches \
		"$(jv "$tmp/out" .MillisBehindLatest) $(jv "$tmp/out" .NextShardIterator)" '^0 [A-Za-z0-9+/=_-]{16,}$'
	local n i prev="" seq
	n=$(jv "$tmp/out" '.Records|length')
	for ((i = 0; i < n; i++)); do
		seq=$(jv "$tmp/out" ".Records[$i].SequenceNumber")
		check "get-records $1: record $i in sequence order" ordered "$prev" "$seq"
		prev=$seq
		echo "$(jv "$tmp/out" ".Records[$i].PartitionKey")=$(jv "$tmp/out" ".Records[$i].Data" | base64 -d)" >>"$tmp/read"
	done
}
# ordered A B: B is a 56-digit sequence number greater than A (or A is empty).
ordered() { [[ $2 =~ ^[0-9]{56}$ ]] && { [ -z "$1" ] || [[ $1 < $2 ]]; } || { echo "     $2 after $1"; return 1; }; }

: >"$tmp/read"
read_shard shardId-000000000000
read_shard shardId-000000000001
check "get-records: all 4 records back with their data" eq "$(sort "$tmp/read" | tr '\n' ';')" \
	"pk-0=record zero;pk-1=record one;pk-2=record two;pk-3=record three;"

kin describe-stream-summary --stream-name "$stream"
check "describe-stream-summary" succeeded
check "describe-stream-summary: $stream ACTIVE with 2 open shards" eq \
	"$(jv "$tmp/out" .StreamDescriptionSummary.StreamName) $(jv "$tmp/out" .StreamDescriptionSummary.StreamStatus) $(jv "$tmp/out" .StreamDescriptionSummary.OpenShardCount)" \
	"$stream ACTIVE 2"

kin delete-stream --stream-name "$stream"
check "delete-stream" succeeded

# The stream is DELETING for the server's delete delay; poll until it is gone.
gone() {
	for _ in $(seq 50); do
		kin describe-stream-summary --stream-name "$stream"
		[ "$rc" -ne 0 ] && break
		sleep 0.2
	done
	[ "$rc" -ne 0 ] && grep -q ResourceNotFoundException "$tmp/err" ||
		{ echo "     exit $rc: $(head -c 300 "$tmp/err")$(head -c 300 "$tmp/out")"; return 1; }
}
check "describe-stream-summary after delete-stream: ResourceNotFoundException" gone

summary
[ "$fail" -eq 0 ]
