package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

func masterKey(t *testing.T, b byte) *segment.MasterKey {
	t.Helper()
	m, err := segment.NewMasterKey(bytes.Repeat([]byte{b}, segment.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &m
}

func keysFor(ms ...*segment.MasterKey) segment.Keys {
	return func(fp segment.Fingerprint) (segment.MasterKey, error) {
		for _, m := range ms {
			if m.ID == fp {
				return *m, nil
			}
		}
		return segment.MasterKey{}, fmt.Errorf("%w: %s", segment.ErrNoKey, fp)
	}
}

// encryptedOf reports, per record read, whether it was stored encrypted.
func encryptedOf(recs []segment.Record) []bool {
	out := make([]bool, len(recs))
	for i, r := range recs {
		out[i] = r.Sealed
	}
	return out
}

// TestEncryptionModes: SetEncryption takes effect at the next append (the
// active segment rolls so each segment has one mode), each record reports
// the mode it was stored in, a key change rolls too, and after a restart
// and after a crash every record still reads with its own mode, all
// segments' headers agreeing.
func TestEncryptionModes(t *testing.T) {
	k1, k2 := masterKey(t, 1), masterKey(t, 2)
	r := newRig(t, func(o *Options) { o.Keys = keysFor(k1, k2) })
	var want []bool
	put := func(n int, tag string, enc bool) {
		t.Helper()
		entries := []Entry{{PartitionKey: "pk", Data: []byte(tag)}}
		for range n {
			res, err := r.sh.Append(context.Background(), entries, 0)
			if err != nil || res.Encrypted != enc {
				t.Fatalf("%s: %+v %v, want encrypted %t", tag, res, err, enc)
			}
			want = append(want, enc)
		}
		r.now = r.now.Add(time.Millisecond)
	}
	put(2, "plain", false)
	r.sh.SetEncryption(k1)
	put(3, "k1", true)
	r.sh.SetEncryption(k2)
	put(1, "k2", true)
	r.sh.SetEncryption(nil)
	put(2, "plain again", false)
	r.sh.SetEncryption(k2)
	put(1, "k2 again", true)

	check := func(when string) {
		t.Helper()
		if got := encryptedOf(r.readAll()); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: encrypted %v, want %v", when, got, want)
		}
		modes := ""
		for _, p := range r.segFiles() {
			b, _ := r.fs.Bytes(p)
			h, err := segment.DecodeFileHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			modes += fmt.Sprintf("%t/%s ", h.Encrypted(), h.Key.Master.String()[:4])
		}
		t.Logf("%s: segments %s", when, modes)
	}
	check("live")
	if n := len(r.segFiles()); n != 5 {
		t.Fatalf("%d segments, want 5 (one per mode change)", n)
	}
	r.restart()
	check("after restart")
	r.sh.SetEncryption(k1) // the restart reset it (storage sets it from meta.db)
	put(1, "k1 after restart", true)
	r.crash(rand.New(rand.NewPCG(1, 1)), vfs.TearPrefix)
	r.boot()
	check("after crash")
}

// TestEncryptedNeedsKeysToRead: a shard without the key reports reading an
// encrypted segment as a missing key, and recovery (CRC only) still works.
func TestEncryptedNeedsKeysToRead(t *testing.T) {
	k := masterKey(t, 1)
	r := newRig(t, func(o *Options) { o.Encryption = k })
	r.append(3, "secret")
	r.crash(rand.New(rand.NewPCG(2, 2)), vfs.TearNone)
	r.boot()
	if err := r.sh.Corrupt(); err != nil {
		t.Fatalf("recovery without keys: %v", err)
	}
	if _, err := r.sh.Read(0, 10, 1<<20, 0); !errors.Is(err, segment.ErrNoKey) {
		t.Fatalf("read without keys: %v", err)
	}
	for _, p := range r.segFiles() {
		b, _ := r.fs.Bytes(p)
		if strings.Contains(string(b), "secret") {
			t.Fatalf("%s holds a record in clear", p)
		}
	}
}
