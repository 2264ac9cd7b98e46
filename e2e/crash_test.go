package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestCrashLoop is `make crash-test`: the real binary is started over one
// data directory, driven by concurrent PutRecord and PutRecords clients that
// log every acknowledgement, and killed with SIGKILL at a random moment,
// again and again (every fourth cycle it is stopped with SIGTERM instead, so
// starts after clean shutdowns, which trust the segment catalogs they wrote,
// mix with starts after crashes). After every restart, every acknowledged record must be
// readable exactly once at its sequence number, in per-shard order; nothing
// that was rejected or never sent may appear; sequence numbers never repeat;
// and the server takes writes again.
//
// Every tenth cycle the server's clock jumps 25 h ahead (a hidden test flag)
// with retention running every 20 ms: everything acknowledged before the jump
// has expired and must be invisible, and retention deletes its segments while
// the writers write, so kills land in the middle of deletions too.
//
// SHARDLOG_CRASH_CYCLES (default 100) and SHARDLOG_CRASH_SEED (default 1) set
// the run.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop")
	}
	cycles, seed := envInt(t, "SHARDLOG_CRASH_CYCLES", 100), envInt(t, "SHARDLOG_CRASH_SEED", 1)
	bin := buildBinary(t)
	cl := &crashLog{t: t, rng: rand.New(rand.NewPCG(uint64(seed), 7)), acked: map[string]ackedRec{},
		attempted: map[string]bool{}, rejected: map[string]bool{}, verified: map[string]string{}, expired: map[string]bool{}}
	cl.ackFile = openAckLog(t)
	dir := t.TempDir()
	var offset time.Duration
	segsAtJump, deleted := 0, false
	for cycle := range cycles {
		if cycle%10 == 5 {
			cl.expireAll()
			offset += 25 * time.Hour
			segsAtJump = countSegments(t, dir)
		}
		p := startProcess(t, bin, dir, "--debug-clock-offset", offset.String(), "--debug-retention-interval", "20ms")
		c := p.client()
		if cycle == 0 {
			createStream(t, c, "crash", 3)
		}
		cl.verify(c, cycle%25 == 0)
		if cycle%10 == 6 && countSegments(t, dir) < segsAtJump {
			deleted = true
		}
		cl.drive(c, p, cycle)
	}
	p := startProcess(t, bin, dir, "--debug-clock-offset", offset.String())
	cl.verify(p.client(), true)
	p.kill()
	if cycles > 6 && !deleted {
		t.Fatal("retention never deleted a segment after a clock jump")
	}
	t.Logf("crash-test: seed %d, %d cycles, %d acknowledged records checked (%d of them expired by retention and invisible), 0 lost, 0 duplicates, 0 phantoms, %d rejected never seen",
		seed, cycles, cl.total, len(cl.expired), len(cl.rejected))
	fmt.Printf("crash-test: cycles=%d acked=%d checked=%d lost=0 duplicates=0 phantoms=0\n", cycles, cl.total, cl.total)
}

// countSegments counts the segment files under dir.
func countSegments(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && filepath.Ext(p) == ".seg" {
			n++
		}
		return nil
	})
	return n
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shardlog")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/shardlog").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func openAckLog(t *testing.T) *bufio.Writer {
	f, err := os.Create(filepath.Join(t.TempDir(), "acks.log"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	t.Cleanup(func() { w.Flush(); f.Close() })
	return w
}

// process is one run of `shardlog serve`. Its clients share one transport
// that is closed with it, so no pooled connection outlives its server.
type process struct {
	t        *testing.T
	cmd      *exec.Cmd
	endpoint string
	tr       *http.Transport
}

// startProcess starts `shardlog serve` over dir; extra flags come last and
// override the defaults (throttling off, instant stream creation, 64 KiB
// segments so that rolls happen often).
func startProcess(t *testing.T, bin, dir string, extra ...string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// Appended to: a restarted server's log follows its predecessor's.
	logf, err := os.OpenFile(filepath.Join(dir, "..", "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--listen", addr, "--data-dir", dir, "--throttle=false",
		"--create-stream-delay", "0", "--delete-stream-delay", "0", "--segment-size", "65536", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, endpoint: "http://" + addr, tr: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(p.kill) // a failing test must not leave a server running
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get(p.endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			// SIGQUIT: the Go runtime writes every goroutine's stack to the log.
			cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(time.Second)
			p.kill()
			out, _ := os.ReadFile(logf.Name())
			if os.Getenv("SHARDLOG_KEEP_FAILED_DIR") != "" {
				exec.Command("cp", "-a", dir, os.Getenv("SHARDLOG_KEEP_FAILED_DIR")).Run()
			}
			t.Fatalf("server did not become healthy:\n%s", out)
		}
	}
}

// terminate sends SIGTERM (drain, sync, close) and reaps the process.
func (p *process) terminate() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
	p.tr.CloseIdleConnections()
}

// kill sends SIGKILL (no drain, no sync, no close) and reaps the process. It
// may be called again once the process is gone.
func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
	p.tr.CloseIdleConnections()
}

// client makes single attempts: a retried put whose first answer was lost
// would store its records twice, and the test could not tell that from a bug.
func (p *process) client() *kinesis.Client {
	return kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), RetryMaxAttempts: 1,
		HTTPClient: newHTTPClient(p.tr), Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
}

// crashLog is what the clients were told, across all cycles.
type crashLog struct {
	t         *testing.T
	rng       *rand.Rand
	mu        sync.Mutex
	acked     map[string]ackedRec // sequence number -> what was acknowledged
	attempted map[string]bool     // data of every record ever sent
	rejected  map[string]bool     // data of records in requests the server refused
	verified  map[string]string   // shard -> last sequence number verified
	expired   map[string]bool     // sequence numbers acknowledged before a clock jump past retention
	total     int                 // acknowledgements, all cycles
	ackFile   *bufio.Writer
}

type ackedRec struct{ shard, data string }

// expireAll records that everything acknowledged so far is past retention.
// Only acknowledgements since the last jump stay in acked, so each verify
// costs what was written since then, not everything ever written.
func (cl *crashLog) expireAll() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for seq := range cl.acked {
		cl.expired[seq] = true
	}
	cl.acked = map[string]ackedRec{}
	cl.verified = map[string]string{}
}

func (cl *crashLog) ack(shard, seq, data string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if prev, dup := cl.acked[seq]; dup || cl.expired[seq] {
		cl.t.Errorf("sequence number %s acknowledged twice: %q and %q", seq, prev.data, data)
	}
	cl.acked[seq] = ackedRec{shard, data}
	cl.total++
	fmt.Fprintf(cl.ackFile, "%s %s %s\n", shard, seq, data)
}

// drive runs writers against p and kills it at a random moment; sometimes a
// stream is being created when the kill lands.
func (cl *crashLog) drive(c *kinesis.Client, p *process, cycle int) {
	killAfter := time.Duration(20+cl.rng.IntN(400)) * time.Millisecond
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.writer(c, cycle, w, stop)
		}()
	}
	if cycle%7 == 3 {
		go c.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(fmt.Sprintf("extra-%d", cycle)), ShardCount: aws.Int32(2)})
	}
	time.Sleep(killAfter)
	if cycle%4 == 1 {
		p.terminate() // a clean shutdown now and then: the next start trusts the catalogs it wrote
	} else {
		p.kill()
	}
	close(stop)
	wg.Wait()
}

func (cl *crashLog) writer(c *kinesis.Client, cycle, w int, stop chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		size := 1 + (n*7+w)%40
		entries := make([]types.PutRecordsRequestEntry, size)
		bad := n%23 == 11 // a request the server must refuse whole
		for i := range entries {
			data := fmt.Sprintf("c%d-w%d-n%d-i%d", cycle, w, n, i)
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("pk%d", (n+i)%17)), Data: []byte(data)}
		}
		if bad {
			entries[size-1].ExplicitHashKey = aws.String("-1")
		}
		cl.mu.Lock()
		for _, e := range entries {
			cl.attempted[string(e.Data)] = true
		}
		cl.mu.Unlock()
		if !cl.put(c, entries, bad) {
			return
		}
	}
}

// put sends one request and logs its acknowledgements; false once the
// server is gone.
func (cl *crashLog) put(c *kinesis.Client, entries []types.PutRecordsRequestEntry, bad bool) bool {
	ctx := context.Background()
	if len(entries) == 1 && !bad {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("crash"), PartitionKey: entries[0].PartitionKey, Data: entries[0].Data})
		if err != nil {
			return false
		}
		cl.ack(*out.ShardId, *out.SequenceNumber, string(entries[0].Data))
		return true
	}
	out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("crash"), Records: entries})
	if bad {
		if code := apiErr(err); err != nil && code != "InvalidArgumentException" && code != "ValidationException" {
			return false // the server died; nothing was acknowledged
		}
		if err == nil {
			cl.t.Errorf("a request with an invalid ExplicitHashKey was accepted")
		}
		cl.mu.Lock()
		for _, e := range entries {
			cl.rejected[string(e.Data)] = true
		}
		cl.mu.Unlock()
		return true
	}
	if err != nil {
		return false
	}
	for i, r := range out.Records {
		if r.ErrorCode == nil {
			cl.ack(*r.ShardId, *r.SequenceNumber, string(entries[i].Data))
		}
	}
	return true
}

// verify reads every shard of "crash" (from the last verified record, or
// all of it when full) and checks it against the log.
func (cl *crashLog) verify(c *kinesis.Client, full bool) {
	t := cl.t
	t.Helper()
	shards, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("crash")})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	seen := map[string]bool{} // data, across all shards
	for _, sh := range shards.Shards {
		after := cl.verified[*sh.ShardId]
		if full {
			after = ""
		}
		last := cl.readShardFrom(c, *sh.ShardId, after, found, seen)
		if last != "" {
			cl.verified[*sh.ShardId] = last
		}
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for seq, data := range found {
		if cl.expired[seq] {
			t.Fatalf("record %s (%q) is past retention but still readable", seq, data)
		}
	}
	for seq, a := range cl.acked {
		if got, ok := found[seq]; ok && got != a.data {
			t.Fatalf("record %s holds %q, acknowledged as %q", seq, got, a.data)
		}
		if _, ok := found[seq]; !ok && (full || !cl.coveredBefore(a.shard, seq)) {
			t.Fatalf("acknowledged record %s (%q) on %s lost", seq, a.data, a.shard)
		}
	}
}

// coveredBefore reports whether seq, on shard, was read by an earlier
// incremental verify (an incremental read starts after that point).
func (cl *crashLog) coveredBefore(shard, seq string) bool {
	last, ok := cl.verified[shard]
	return ok && (lessSeq(seq, last) || seq == last)
}

func lessSeq(a, b string) bool { return len(a) < len(b) || (len(a) == len(b) && a < b) }

func (cl *crashLog) readShardFrom(c *kinesis.Client, shard, after string, found map[string]string, seen map[string]bool) string {
	t := cl.t
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String("crash"), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if after != "" {
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(after)
	}
	it, err := c.GetShardIterator(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	last, prev := "", new(big.Int)
	for iter := it.ShardIterator; iter != nil; {
		out, err := c.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records {
			cl.checkRecord(shard, r, prev, seen)
			found[*r.SequenceNumber] = string(r.Data)
			last = *r.SequenceNumber
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			break
		}
		iter = out.NextShardIterator
	}
	return last
}

func (cl *crashLog) checkRecord(shard string, r types.Record, prev *big.Int, seen map[string]bool) {
	t := cl.t
	n, _ := new(big.Int).SetString(*r.SequenceNumber, 10)
	if n.Cmp(prev) <= 0 {
		t.Fatalf("%s: %s not after the previous record", shard, *r.SequenceNumber)
	}
	prev.Set(n)
	data := string(r.Data)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case seen[data]:
		t.Fatalf("%s: record %q stored twice", shard, data)
	case cl.rejected[data]:
		t.Fatalf("%s: rejected record %q is stored", shard, data)
	case !cl.attempted[data]:
		t.Fatalf("%s: phantom record %q at %s", shard, data, *r.SequenceNumber)
	}
	seen[data] = true
}
