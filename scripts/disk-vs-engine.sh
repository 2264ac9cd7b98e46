#!/usr/bin/env bash
# Compares the engine's durable append bandwidth with the disk's, in turns,
# because this class of (virtual) disk swings by 3x within minutes:
# BenchmarkAppendIncompressible (incompressible 8 KiB records in 500-record
# Puts, frames of about 4 MiB) against `dd oflag=dsync` and `fio --fdatasync=1`
# doing 4 MiB appends in the same directory. ROUNDS (default 10) rounds; each
# prints "dd fio engine" in MB/s, and the end prints the aggregate ratios.
# Needs dd, fio and python3; TMPDIR picks the disk (default /tmp).
set -euo pipefail
ROUNDS=${ROUNDS:-10}
dir=${TMPDIR:-/tmp}/shardlog-disk-vs-engine
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/storage.test" ./storage/
head -c 256M /dev/urandom > "$dir/rand.bin"
mbps() { python3 -c "import sys; print(round($1/$2/1e6))"; }
for r in $(seq 1 "$ROUNDS"); do
  secs=$(dd if="$dir/rand.bin" of="$dir/dd.out" bs=4096k count=64 oflag=dsync 2>&1 | tail -1 | awk '{print $(NF-3)}')
  rm -f "$dir/dd.out"
  dd=$(mbps 268435456 "$secs")
  fio=$(fio --name=append --filename="$dir/fio.out" --rw=write --bs=4M --size=256M --fdatasync=1 --ioengine=psync \
        --fallocate=none --unlink=1 --output-format=json 2>/dev/null |
        python3 -c "import json,sys; print(round(json.load(sys.stdin)['jobs'][0]['write']['bw_bytes']/1e6))")
  eng=$(cd "$dir" && ./storage.test -test.run=NONE -test.bench=BenchmarkAppendIncompressible -test.benchtime=3s 2>&1 |
        awk '/^Benchmark/ {for (i = 1; i <= NF; i++) if ($i == "MB/s") {print $(i-1); exit}}')
  echo "round $r: dd $dd fio $fio engine $eng"
done | tee "$dir/rounds.txt"
python3 - "$dir/rounds.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
dd, fio, eng = (sum(float(r[i]) for r in rows) for i in (3, 5, 7))
print(f"aggregate: engine/dd {eng/dd:.2f}, engine/fio {eng/fio:.2f} (goal 0.8)")
PY
