package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/replica"
	"github.com/shardlog/shardlog/storage"
)

const (
	ordersKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
	otherKeyID  = "0987dcba-09ba-87dc-65fe-0987654321ba"
)

// ringText is a keyring file: orders (alias/orders) in state ordersState
// ("" for none: the key is missing), other Disabled, doomed PendingDeletion.
func ringText(ordersState string) string {
	m := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	s := "keys:\n"
	if ordersState != "" {
		s += "  - key_id: " + ordersKeyID + "\n    aliases: [alias/orders]\n    material: " + m(1) + "\n    state: " + ordersState + "\n"
	}
	return s + "  - key_id: " + otherKeyID + "\n    material: " + m(2) + "\n    state: Disabled\n" +
		"  - key_id: doomed\n    material: " + m(3) + "\n    state: PendingDeletion\n"
}

// testRings are each node's keyring and its file, which a test rewrites
// and reloads (serve's SIGHUP).
type testRings struct {
	t     *testing.T
	files map[uint64]string
	rings map[uint64]*keyring.Keyring
}

func newTestRings(t *testing.T, n int) *testRings {
	r := &testRings{t: t, files: map[uint64]string{}, rings: map[uint64]*keyring.Keyring{}}
	for id := uint64(1); id <= uint64(n); id++ {
		r.files[id] = filepath.Join(t.TempDir(), "keyring.yaml")
		r.set(id, "Enabled")
		k, err := keyring.Open(keyring.Options{File: r.files[id], Account: "123456789012"})
		if err != nil {
			t.Fatal(err)
		}
		r.rings[id] = k
	}
	return r
}

// set rewrites node id's keyring file with orders in state and reloads it.
func (r *testRings) set(id uint64, state string) {
	if err := os.WriteFile(r.files[id], []byte(ringText(state)), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if k := r.rings[id]; k != nil {
		if err := k.Reload(); err != nil {
			r.t.Fatal(err)
		}
	}
}

// readMode is a record as read: "key=data" and whether it was encrypted.
type readMode struct {
	value     string
	encrypted bool
}

// readModes reads every record of a one-shard stream through node id.
func (c *testCluster) readModes(id uint64, stream string) (map[string]readMode, error) {
	ctx := context.Background()
	n := c.node(id)
	pos, err := n.Position(ctx, stream, "shardId-000000000000", storage.TrimHorizon, "", time.Time{})
	if err != nil {
		return nil, err
	}
	out := map[string]readMode{}
	for {
		res, err := n.Read(ctx, pos, 5, 1<<20)
		if err != nil {
			return nil, err
		}
		for _, r := range res.Records {
			out[r.SequenceNumber] = readMode{r.PartitionKey + "=" + string(r.Data), r.Encrypted}
		}
		if len(res.Records) == 0 {
			return out, nil
		}
		pos = *res.Next
	}
}

// putModes puts count records named prefix-i through node id and adds what
// was acknowledged to want, with the encryption each result reported.
func (c *testCluster) putModes(id uint64, stream, prefix string, count int, want map[string]readMode) error {
	var entries []storage.PutEntry
	for i := range count {
		entries = append(entries, storage.PutEntry{PartitionKey: fmt.Sprintf("%s-key-%d", prefix, i), Data: []byte(fmt.Sprintf("%s-data-%d", prefix, i))})
	}
	res, err := c.node(id).Put(context.Background(), stream, entries)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return fmt.Errorf("record %d: %w", i, r.Err)
		}
		want[r.SequenceNumber] = readMode{entries[i].PartitionKey + "=" + string(entries[i].Data), r.Encrypted}
	}
	return nil
}

func sameModes(want, got map[string]readMode) error {
	if len(want) != len(got) {
		return fmt.Errorf("read %d records, want %d", len(got), len(want))
	}
	for seq, w := range want {
		if got[seq] != w {
			return fmt.Errorf("record %s read as %+v, want %+v", seq, got[seq], w)
		}
	}
	return nil
}

// diskHolds reports whether any file of node id's cluster directory (Raft
// WAL, segments, snapshots) contains marker.
func (c *testCluster) diskHolds(id uint64, marker string) (bool, error) {
	fs := c.nodes[id].fs
	var walk func(dir string) (bool, error)
	walk = func(dir string) (bool, error) {
		names, err := fs.ReadDir(dir)
		if err != nil {
			return false, err
		}
		for _, name := range names {
			p := path.Join(dir, strings.TrimSuffix(name, "/"))
			if strings.HasSuffix(name, "/") {
				if found, err := walk(p); found || err != nil {
					return found, err
				}
				continue
			}
			b, err := fs.Bytes(p)
			if err != nil {
				return false, err
			}
			if bytes.Contains(b, []byte(marker)) {
				return true, nil
			}
		}
		return false, nil
	}
	return walk("/raft")
}

// checkDisks: on every node, no trace of an encrypted record's key or data
// ("secret") and the plaintext of those written before Start ("plain").
func (c *testCluster) checkDisks(secret, plain string) {
	c.t.Helper()
	for id := range c.nodes {
		if found, err := c.diskHolds(id, secret); err != nil || found {
			c.t.Fatalf("node %d: %q on disk: %t, %v", id, secret, found, err)
		}
		if found, err := c.diskHolds(id, plain); err != nil || !found {
			c.t.Fatalf("node %d: %q not on disk: %t, %v", id, plain, found, err)
		}
	}
}

// TestClusterEncryption: StartStreamEncryption through one node; records
// written through a follower (forwarded to the shard's leader) are stored
// encrypted on every node's disk and read back in clear through another
// follower, with EncryptionType KMS on exactly those records, by GetRecords
// and SubscribeToShard; StopStreamEncryption leaves them encrypted and
// readable; single-node mode's errors and limit; a key missing from the
// leader's keyring, or disabled, refuses writes (never plaintext); the
// generated alias/aws/kinesis key is the same on every node; a restart of
// every node keeps it all.
func TestClusterEncryption(t *testing.T) {
	clock := &settingsClock{}
	rings := newTestRings(t, 3)
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now, c.update = clock.now, time.Minute
		c.tune = func(cfg *Config) { cfg.Keyring = rings.rings[cfg.NodeID] }
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	if _, err := c.node(1).RegisterConsumer(ctx, "s", "efo", nil); err != nil {
		t.Fatal(err)
	}
	roles := c.rolesOf("s")
	writer, reader := roles.followers[0], roles.followers[1]
	want := map[string]readMode{}
	if err := c.putModes(writer, "s", "plainmark", 3, want); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		stream, keyID string
		kind          error
		reason        storage.Reason
	}{
		{"missing", "alias/orders", storage.ErrStreamNotFound, storage.ReasonStreamNotFound},
		{"s", "alias/nope", storage.ErrKMSNotFound, storage.ReasonKMSNotFound},
		{"s", "arn:aws:kms:us-east-1:999999999999:key/" + ordersKeyID, storage.ErrKMSNotFound, storage.ReasonKMSNotFound},
		{"s", otherKeyID, storage.ErrKMSDisabled, storage.ReasonKMSDisabled},
		{"s", "doomed", storage.ErrKMSInvalidState, storage.ReasonKMSInvalidState},
	} {
		err := c.node(2).StartEncryption(ctx, tc.stream, tc.keyID, "us-east-1")
		wantReason(t, "StartEncryption "+tc.stream+" "+tc.keyID, err, tc.kind, tc.reason)
	}

	if err := c.node(1).StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	c.wantStatus("s", storage.StatusUpdating)
	wantReason(t, "Start while UPDATING", c.node(3).StartEncryption(ctx, "s", "alias/orders", "us-east-1"), storage.ErrResourceInUse, storage.ReasonNotActive)
	clock.add(2 * time.Minute)
	c.waitActive("s", 1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		info, err := c.node(id).DescribeStream(ctx, "s")
		if err != nil || info.EncryptionType != storage.EncryptionKMS || info.KeyID != "alias/orders" {
			t.Fatalf("node %d after Start: %s %q, %v", id, info.EncryptionType, info.KeyID, err)
		}
	}
	if err := c.putModes(writer, "s", "secretmark", 4, want); err != nil {
		t.Fatal(err)
	}
	if err := c.putModes(roles.leader, "s", "secretmark-at-leader", 2, want); err != nil {
		t.Fatal(err)
	}
	checkEncryptedCount(t, want, 6)
	c.checkReads(want, 1, 2, 3)
	c.checkSubscribed(reader, want)
	c.checkDisks("secretmark", "plainmark-data-0")

	c.checkMissingKey(rings, want)

	// Disabled everywhere: writes and new starts refused, reads go on.
	for id := uint64(1); id <= 3; id++ {
		rings.set(id, "Disabled")
	}
	wantReason(t, "put with the key disabled", c.putModes(writer, "s", "refused", 1, map[string]readMode{}), storage.ErrKMSDisabled, storage.ReasonKMSDisabled)
	c.checkReads(want, 1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		rings.set(id, "Enabled")
	}
	if err := c.putModes(writer, "s", "secretmark-again", 1, want); err != nil {
		t.Fatal(err)
	}

	// Stop: new records plaintext, the encrypted ones stay so.
	if err := c.node(3).StopEncryption(ctx, "s", "alias/orders"); err != nil {
		t.Fatal(err)
	}
	clock.add(2 * time.Minute)
	c.waitActive("s", 1, 2, 3)
	if info, err := c.node(2).DescribeStream(ctx, "s"); err != nil || info.EncryptionType != storage.EncryptionNone || info.KeyID != "" {
		t.Fatalf("after Stop: %s %q, %v", info.EncryptionType, info.KeyID, err)
	}
	if err := c.putModes(writer, "s", "plainmark-after", 2, want); err != nil {
		t.Fatal(err)
	}
	checkEncryptedCount(t, want, 7)
	c.checkReads(want, 1, 2, 3)
	c.checkDisks("secretmark", "plainmark-after-data-1")

	// alias/aws/kinesis: one generated key, the same on every node.
	if err := c.node(2).CreateStream(ctx, storage.CreateStreamInput{Name: "d", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("d", 1, 2, 3)
	if err := c.node(3).StartEncryption(ctx, "d", "alias/aws/kinesis", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	clock.add(2 * time.Minute)
	c.waitActive("d", 1, 2, 3)
	wantD := map[string]readMode{}
	for id := uint64(1); id <= 3; id++ {
		if err := c.putModes(id, "d", fmt.Sprint("defaultmark", id), 2, wantD); err != nil {
			t.Fatal(err)
		}
	}
	checkEncryptedCount(t, wantD, 6)
	c.checkStreamReads("d", wantD, 1, 2, 3)

	// Every node restarts: the same records, the same modes.
	for id := uint64(1); id <= 3; id++ {
		c.stop(id)
	}
	var wg sync.WaitGroup
	for id := uint64(1); id <= 3; id++ {
		wg.Go(func() { c.start(id) }) // each Open waits for a quorum
	}
	wg.Wait()
	c.waitActive("s", 1, 2, 3)
	c.checkReads(want, 1, 2, 3)
	c.checkStreamReads("d", wantD, 1, 2, 3)
	c.checkDisks("defaultmark", "plainmark-data-0")
}

// checkMissingKey: with the key only in one follower's keyring, writes
// through a node without it, and writes through that follower (forwarded
// to the leader, which lacks it), are refused with single-node mode's
// error and store nothing; reads of the encrypted records on a node
// without the key answer the same, while the follower still reads them. A
// run in which the follower became the leader (a loaded machine) stores
// the record, encrypted, and is run again.
func (c *testCluster) checkMissingKey(rings *testRings, want map[string]readMode) {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		roles := c.rolesOf("s")
		keeper := roles.followers[0]
		for id := uint64(1); id <= 3; id++ {
			if id != keeper {
				rings.set(id, "")
			}
		}
		err := c.putModes(roles.leader, "s", "refused", 1, map[string]readMode{})
		wantReason(c.t, "put through a node without the key", err, storage.ErrKMSNotFound, storage.ReasonKMSNotFound)
		_, err = c.readModes(roles.leader, "s")
		wantReason(c.t, "read on a node without the key", err, storage.ErrKMSNotFound, storage.ReasonKMSNotFound)
		stored := map[string]readMode{}
		err = c.putModes(keeper, "s", "secretmark-if-led", 1, stored)
		maps.Copy(want, stored)
		if err == nil && attempt < 4 {
			continue // keeper led the shard by then: nothing was refused
		}
		wantReason(c.t, "put forwarded to a leader without the key", err, storage.ErrKMSNotFound, storage.ReasonKMSNotFound)
		c.checkReads(want, keeper)
		for id := uint64(1); id <= 3; id++ {
			rings.set(id, "Enabled")
		}
		return
	}
}

// checkEncryptedCount: every record acknowledged encrypted exactly when
// its name says it was written while the stream was encrypted, and at
// least n of them.
func checkEncryptedCount(t *testing.T, want map[string]readMode, n int) {
	t.Helper()
	got := 0
	for _, w := range want {
		if w.encrypted != (strings.Contains(w.value, "secretmark") || strings.Contains(w.value, "defaultmark")) {
			t.Fatalf("%s acknowledged with encrypted %t", w.value, w.encrypted)
		}
		if w.encrypted {
			got++
		}
	}
	if got < n {
		t.Fatalf("%d records acknowledged encrypted, want %d", got, n)
	}
}

func (c *testCluster) checkReads(want map[string]readMode, ids ...uint64) {
	c.t.Helper()
	c.checkStreamReads("s", want, ids...)
}

func (c *testCluster) checkStreamReads(stream string, want map[string]readMode, ids ...uint64) {
	c.t.Helper()
	for _, id := range ids {
		eventually(c.t, fmt.Sprintf("%s read through node %d", stream, id), func() error {
			got, err := c.readModes(id, stream)
			if err != nil {
				return err
			}
			return sameModes(want, got)
		})
	}
}

// checkSubscribed: SubscribeToShard delivers want, with its modes.
func (c *testCluster) checkSubscribed(id uint64, want map[string]readMode) {
	c.t.Helper()
	var recs []storage.Record
	var err error
	for range 20 {
		if recs, err = c.subscribeOnce(id, len(want)); err == nil {
			break
		}
	}
	if err != nil {
		c.t.Fatal(err)
	}
	got := map[string]readMode{}
	for _, r := range recs {
		got[r.SequenceNumber] = readMode{r.PartitionKey + "=" + string(r.Data), r.Encrypted}
	}
	if err := sameModes(want, got); err != nil {
		c.t.Fatalf("subscribed: %v", err)
	}
}

// TestClusterKeyChangeLimit: 25 StartStreamEncryption calls per stream and
// rolling 24 hours, through any node; a refused key is not counted.
func TestClusterKeyChangeLimit(t *testing.T) {
	clock := &settingsClock{}
	rings := newTestRings(t, 3)
	c := newTestClusterWith(t, 3, func(c *testCluster) {
		c.now = clock.now
		c.tune = func(cfg *Config) { cfg.Keyring = rings.rings[cfg.NodeID] }
	})
	ctx := context.Background()
	if err := c.node(1).CreateStream(ctx, storage.CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.waitActive("s", 1, 2, 3)
	for i := range storage.MaxKeyChangesPerDay {
		wantReason(t, "a refused key", c.node(uint64(i%3+1)).StartEncryption(ctx, "s", "alias/nope", "us-east-1"), storage.ErrKMSNotFound, storage.ReasonKMSNotFound)
		if err := c.node(uint64(i%3+1)).StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		// UPDATING for the metadata fence, even with no UpdateDelay (lease.go)
		c.waitActive("s", uint64(i%3+1))
	}
	err := c.node(2).StartEncryption(ctx, "s", "alias/orders", "us-east-1")
	if se := wantReason(t, "start 26", err, storage.ErrLimitExceeded, storage.ReasonKeyChanges); se.Limit != storage.MaxKeyChangesPerDay {
		t.Fatalf("limit %d", se.Limit)
	}
	if err := c.node(3).StopEncryption(ctx, "s", "alias/orders"); err != nil {
		t.Fatalf("Stop is not limited: %v", err)
	}
	c.waitActive("s", 1)
	clock.add(24*time.Hour + time.Minute)
	if err := c.node(1).StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
		t.Fatalf("a day later: %v", err)
	}
}

// TestEncryptedRecordCodec: an encrypted record opens to its key and data
// with its arrival time, which stays readable without a key, as does its
// size in clear; a changed arrival time, data key block or ciphertext does
// not open; a keyring without the master key answers errNoRecordKey;
// plaintext records and seal entries are never taken for encrypted ones.
func TestEncryptedRecordCodec(t *testing.T) {
	rings := newTestRings(t, 1)
	n := &Node{crypt: newCrypt(rings.rings[1])}
	rec := streamRec{MetaStream: replica.MetaStream{Name: "s"}}
	rec.EncryptionType, rec.KeyID = storage.EncryptionKMS, "alias/orders"
	m, err := rings.rings[1].Resolve("alias/orders", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	rec.KeyFingerprint = m.ID.String()
	key, err := n.writeKey(rec)
	if err != nil || key == nil || key.ID != m.ID {
		t.Fatalf("writeKey: %v", err)
	}
	dk, err := n.crypt.sealer(7, *key)
	if err != nil {
		t.Fatal(err)
	}
	e := entry{key: "pk", data: []byte("secret data")}
	b := dk.appendEncrypted(nil, 1234, e)
	if len(b) != encryptedSize(e) || !isEncrypted(b) || bytes.Contains(b, e.data) || bytes.Contains(b, []byte(e.key)) {
		t.Fatalf("encrypted record %x", b)
	}
	if a, err := recordArrival(b); err != nil || a != 1234 || recordBytes(b) != len(e.key)+len(e.data) {
		t.Fatalf("arrival %d, bytes %d, %v", a, recordBytes(b), err)
	}
	if a, k, d, enc, err := n.openRecord(b); err != nil || a != 1234 || k != e.key || string(d) != string(e.data) || !enc {
		t.Fatalf("open: %d %q %q %t %v", a, k, d, enc, err)
	}
	for _, tc := range []struct {
		name string
		at   int
	}{{"arrival", 0}, {"key block", recordHeader + 20}, {"ciphertext", len(b) - 20}} {
		bad := bytes.Clone(b)
		bad[tc.at] ^= 1
		if _, _, _, _, err := n.openRecord(bad); err == nil {
			t.Errorf("changed %s: opened", tc.name)
		}
	}
	plain := encodeRecord(99, e)
	if isEncrypted(plain) || isEncrypted(sealMarker) {
		t.Fatal("a plaintext record or seal entry taken for an encrypted one")
	}
	if a, k, _, enc, err := n.openRecord(plain); err != nil || a != 99 || k != "pk" || enc {
		t.Fatalf("plaintext: %d %q %t %v", a, k, enc, err)
	}
	if dk2, _ := n.crypt.sealer(7, *key); dk2 != dk {
		t.Fatal("a new data key for every proposal")
	}
	dk.used.Store(maxSealsPerDataKey)
	if dk2, _ := n.crypt.sealer(7, *key); dk2 == dk {
		t.Fatal("a used-up data key kept")
	}
	rings.set(1, "")
	if _, _, _, _, err := n.openRecord(b); !errors.Is(err, errNoRecordKey) {
		t.Fatalf("without the master key: %v", err)
	}
	if _, err := n.writeKey(rec); !errors.Is(err, storage.ErrKMSNotFound) {
		t.Fatalf("writeKey without the master key: %v", err)
	}
}
