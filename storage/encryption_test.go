package storage

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/vfs"
)

const testKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"

// writeKeyring writes a keyring file with testKeyID (material of byte 1)
// and returns a Keyring on it.
func writeKeyring(t *testing.T, dir string, withKey bool) *keyring.Keyring {
	t.Helper()
	p := filepath.Join(dir, "keyring.yaml")
	text := "keys: []\n"
	if withKey {
		text = "keys:\n  - key_id: " + testKeyID + "\n    aliases: [alias/orders]\n    material: " +
			base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n  - key_id: disabled-key\n    state: Disabled\n    material: " +
			base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)) + "\n"
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := keyring.Open(keyring.Options{File: p, DataDir: dir, Account: DefaultAccountID})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openEncTest(t *testing.T, fs vfs.FS, dir string, c *clock, k *keyring.Keyring) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, FS: fs, Now: c.now, SegmentSize: 4 << 10, IndexInterval: time.Millisecond, Keyring: k})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readShard0 reads shard 0 of stream s from the start.
func readShard0(t *testing.T, s *Store) []Record {
	t.Helper()
	pos, err := s.Position(context.Background(), "s", "shardId-000000000000", TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Read(context.Background(), pos, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return res.Records
}

func encFlags(recs []Record) string {
	var b strings.Builder
	for _, r := range recs {
		if r.Encrypted {
			b.WriteByte('E')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

// TestStartStopEncryption: Start makes the stream UPDATING then ACTIVE and
// Describe report KMS and the KeyId as given; records written after Start
// are stored (and reported) encrypted, after Stop plaintext again, the old
// ones keep their mode, and all of it survives a restart.
func TestStartStopEncryption(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.NewMemFS()
	c := &clock{time.Now()}
	k := writeKeyring(t, dir, true)
	s := openEncTest(t, fs, dir, c, k)
	ctx := context.Background()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Second) // CreateDelay 0: ACTIVE at its first look
	putOne := func(enc bool) {
		t.Helper()
		if res := put(t, s, PutEntry{PartitionKey: "k", Data: []byte("payload")}); res[0].Encrypted != enc {
			t.Fatalf("put reports encrypted %t, want %t", res[0].Encrypted, enc)
		}
	}
	putOne(false)
	if err := s.StartEncryption(ctx, "s", "alias/orders", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	info, _ := s.DescribeStream(ctx, "s")
	if info.EncryptionType != EncryptionKMS || info.KeyID != "alias/orders" {
		t.Fatalf("described %s %q", info.EncryptionType, info.KeyID)
	}
	putOne(true)
	putOne(true)
	if err := s.StopEncryption(ctx, "s", "alias/orders"); err != nil {
		t.Fatal(err)
	}
	if info, _ := s.DescribeStream(ctx, "s"); info.EncryptionType != EncryptionNone || info.KeyID != "" {
		t.Fatalf("after Stop: %s %q", info.EncryptionType, info.KeyID)
	}
	putOne(false)
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	putOne(true)
	if got := encFlags(readShard0(t, s)); got != ".EE.E" {
		t.Fatalf("records read %s", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openEncTest(t, fs, dir, c, k)
	defer s.Close()
	putOne(true)
	if got := encFlags(readShard0(t, s)); got != ".EE.EE" {
		t.Fatalf("after restart %s", got)
	}
}

// TestStartEncryptionErrors: the KMS family for the key, the stream's state,
// and the limit of 25 key changes per rolling 24 hours.
func TestStartEncryptionErrors(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Now()}
	s := openEncTest(t, vfs.NewMemFS(), dir, c, writeKeyring(t, dir, true))
	defer s.Close()
	ctx := context.Background()
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		keyID string
		want  error
	}{
		{"alias/none", ErrKMSNotFound},
		{"arn:aws:kms:eu-west-1:" + DefaultAccountID + ":key/" + testKeyID, ErrKMSNotFound},
		{"disabled-key", ErrKMSDisabled},
	} {
		if err := s.StartEncryption(ctx, "s", tt.keyID, "us-east-1"); !errors.Is(err, tt.want) {
			t.Fatalf("%s: %v, want %v", tt.keyID, err, tt.want)
		}
	}
	s.opts.UpdateDelay = time.Hour
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); !errors.Is(err, ErrResourceInUse) {
		t.Fatalf("while UPDATING: %v", err)
	}
	s.opts.UpdateDelay = 0
	c.t = c.t.Add(2 * time.Hour)
	s.mu.Lock()
	s.finishPendingLocked(s.streams["s"])
	s.mu.Unlock()
	for i := 1; i < MaxKeyChangesPerDay; i++ {
		c.t = c.t.Add(time.Minute)
		if err := s.StartEncryption(ctx, "s", "alias/aws/kinesis", "us-east-1"); err != nil {
			t.Fatalf("change %d: %v", i+1, err)
		}
	}
	err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1")
	var se *Error
	if !errors.As(err, &se) || se.Kind != ErrLimitExceeded || se.Reason != ReasonKeyChanges {
		t.Fatalf("26th change: %v", err)
	}
	if err := s.StopEncryption(ctx, "s", testKeyID); err != nil {
		t.Fatalf("Stop is not limited: %v", err)
	}
	c.t = c.t.Add(24 * time.Hour)
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); err != nil {
		t.Fatalf("a day later: %v", err)
	}
}

// TestEncryptedStreamKeyMissing: a stream whose key left the keyring takes
// no writes (never plaintext) and reads of its encrypted records fail with
// KMSNotFound; a keyring reload that brings the key back resumes both.
func TestEncryptedStreamKeyMissing(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.NewMemFS()
	c := &clock{time.Now()}
	s := openEncTest(t, fs, dir, c, writeKeyring(t, dir, true))
	ctx := context.Background()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	put(t, s, PutEntry{PartitionKey: "k", Data: []byte("secret")})
	s.Close()

	k := writeKeyring(t, dir, false)
	s = openEncTest(t, fs, dir, c, k)
	defer s.Close()
	if _, err := s.Put(ctx, "s", []PutEntry{{PartitionKey: "k", Data: []byte("x")}}); !errors.Is(err, ErrKMSNotFound) {
		t.Fatalf("put without the key: %v", err)
	}
	pos, err := s.Position(ctx, "s", "shardId-000000000000", TrimHorizon, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, pos, 10, 1<<20); !errors.Is(err, ErrKMSNotFound) {
		t.Fatalf("read without the key: %v", err)
	}
	writeKeyring(t, dir, true) // the file has the key again
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if res := put(t, s, PutEntry{PartitionKey: "k", Data: []byte("y")}); !res[0].Encrypted {
		t.Fatal("write after the key came back is not encrypted")
	}
	if got := encFlags(readShard0(t, s)); got != "EE" {
		t.Fatalf("records %s", got)
	}
}

// TestEncryptedStreamKeyDisabled: a stream's key disabled (or pending
// deletion) in a reloaded keyring refuses writes with KMS's error, as AWS
// does, while what it encrypted stays readable; enabled again, writes go on.
func TestEncryptedStreamKeyDisabled(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Now()}
	k := writeKeyring(t, dir, true)
	s := openEncTest(t, vfs.NewMemFS(), dir, c, k)
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateStream(ctx, CreateStreamInput{Name: "s", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.StartEncryption(ctx, "s", testKeyID, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	put(t, s, PutEntry{PartitionKey: "k", Data: []byte("a")})
	setKeyState := func(state string) {
		t.Helper()
		p := filepath.Join(dir, "keyring.yaml")
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(raw), "    aliases: [alias/orders]\n", "    aliases: [alias/orders]\n    state: "+state+"\n", 1)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := k.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		state string
		kind  error
	}{{"Disabled", ErrKMSDisabled}, {"PendingDeletion", ErrKMSInvalidState}} {
		setKeyState(tc.state)
		if _, err := s.Put(ctx, "s", []PutEntry{{PartitionKey: "k", Data: []byte("x")}}); !errors.Is(err, tc.kind) {
			t.Fatalf("put under a %s key: %v, want %v", tc.state, err, tc.kind)
		}
		writeKeyring(t, dir, true) // enabled again (the file as it was)
		if err := k.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	put(t, s, PutEntry{PartitionKey: "k", Data: []byte("b")})
	if got := encFlags(readShard0(t, s)); got != "EE" {
		t.Fatalf("records %s", got)
	}
}
