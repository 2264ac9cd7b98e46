package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/datadir"
	"github.com/shardlog/shardlog/segment"
)

const (
	uuidA = "1234abcd-12ab-34cd-56ef-1234567890ab"
	uuidB = "0987dcba-09ba-87dc-65fe-0987654321ba"
)

func material(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func fingerprint(t *testing.T, b byte) segment.Fingerprint {
	m, err := segment.NewMasterKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func writeFile(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "keyring.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testRing(t *testing.T) (*Keyring, string) {
	t.Helper()
	dir := t.TempDir()
	p := writeFile(t, dir, `
keys:
  - key_id: `+uuidA+`
    aliases: [alias/orders, alias/aws/kinesis]
    material: `+material(1)+`
  - key_id: `+uuidB+`
    material: `+material(2)+`
    state: Disabled
  - key_id: doomed
    material: `+material(3)+`
    state: PendingDeletion
`)
	k, err := Open(Options{File: p, DataDir: dir, Account: "111122223333"})
	if err != nil {
		t.Fatal(err)
	}
	return k, dir
}

func TestResolve(t *testing.T) {
	k, dir := testRing(t)
	a := fingerprint(t, 1)
	tests := []struct {
		keyID string
		want  segment.Fingerprint
		err   error
	}{
		{uuidA, a, nil},
		{"arn:aws:kms:us-east-1:111122223333:key/" + uuidA, a, nil},
		{"alias/orders", a, nil},
		{"arn:aws:kms:us-east-1:111122223333:alias/orders", a, nil},
		{"alias/aws/kinesis", a, nil}, // the keyring maps it: no key is generated
		{"arn:aws:kms:eu-west-1:111122223333:key/" + uuidA, segment.Fingerprint{}, ErrNotFound},
		{"arn:aws:kms:us-east-1:999999999999:key/" + uuidA, segment.Fingerprint{}, ErrNotFound},
		{"arn:aws:kms:us-east-1:111122223333:other/" + uuidA, segment.Fingerprint{}, ErrNotFound},
		{"arn:aws:s3:::bucket", segment.Fingerprint{}, ErrNotFound},
		{"alias/missing", segment.Fingerprint{}, ErrNotFound},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", segment.Fingerprint{}, ErrNotFound},
		{uuidB, segment.Fingerprint{}, ErrDisabled},
		{"doomed", segment.Fingerprint{}, ErrInvalidState},
	}
	for _, tt := range tests {
		m, err := k.Resolve(tt.keyID, "us-east-1")
		if !errors.Is(err, tt.err) || (tt.err == nil && m.ID != tt.want) {
			t.Errorf("Resolve(%q) = %s, %v; want %s, %v", tt.keyID, m.ID, err, tt.want, tt.err)
		}
	}
	if _, err := os.Stat(datadir.DefaultKeyPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("a default key was generated although the keyring maps the alias: %v", err)
	}
	// Disabled keys still open what was written under them.
	for _, b := range []byte{1, 2, 3} {
		if m, err := k.Keys()(fingerprint(t, b)); err != nil || m.ID != fingerprint(t, b) {
			t.Errorf("Keys(%d): %v", b, err)
		}
	}
	if _, err := k.Keys()(fingerprint(t, 9)); !errors.Is(err, segment.ErrNoKey) {
		t.Errorf("unknown fingerprint: %v", err)
	}
}

// TestDefaultKey: without a keyring, alias/aws/kinesis gets a key generated
// once (0600, no temporary left), which later keyrings and restarts reuse.
func TestDefaultKey(t *testing.T) {
	dir := t.TempDir()
	k, err := Open(Options{DataDir: dir, Account: "111122223333"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Keys()(fingerprint(t, 1)); !errors.Is(err, segment.ErrNoKey) {
		t.Fatalf("Keys before any key exists: %v", err)
	}
	m, err := k.Resolve("alias/aws/kinesis", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if m2, err := k.Resolve("arn:aws:kms:us-east-1:111122223333:alias/aws/kinesis", "us-east-1"); err != nil || m2.ID != m.ID {
		t.Fatalf("alias ARN: %v", err)
	}
	fi, err := os.Stat(datadir.DefaultKeyPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if _, err := os.Stat(datadir.DefaultKeyPath(dir) + datadir.TmpExt); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
	if _, err := k.Resolve(uuidA, "us-east-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no keyring, a key ID: %v", err)
	}
	again, err := Open(Options{DataDir: dir, File: writeFile(t, dir, "keys: []\n")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Keys()(m.ID); err != nil || got.ID != m.ID {
		t.Fatalf("reopened: %v", err)
	}
	if got, err := again.Resolve("alias/aws/kinesis", "us-east-1"); err != nil || got.ID != m.ID {
		t.Fatalf("reopened Resolve: %v", err)
	}
}

func TestReload(t *testing.T) {
	k, dir := testRing(t)
	writeFile(t, dir, "keys:\n  - key_id: "+uuidB+"\n    material: "+material(2)+"\n")
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Resolve(uuidB, "us-east-1"); err != nil {
		t.Fatalf("reloaded key: %v", err)
	}
	if _, err := k.Resolve(uuidA, "us-east-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed key: %v", err)
	}
	writeFile(t, dir, "keys: [{key_id: x, material: short}]\n")
	if err := k.Reload(); !errors.Is(err, ErrFile) {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := k.Resolve(uuidB, "us-east-1"); err != nil {
		t.Fatalf("a bad reload dropped the keys in use: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for name, text := range map[string]string{
		"unknown field":     "keys: [{key_id: a, material: " + material(1) + ", colour: red}]",
		"no key id":         "keys: [{material: " + material(1) + "}]",
		"alias as key id":   "keys: [{key_id: alias/x, material: " + material(1) + "}]",
		"arn as key id":     "keys: [{key_id: 'arn:aws:kms:r:a:key/x', material: " + material(1) + "}]",
		"bad alias":         "keys: [{key_id: a, aliases: [orders], material: " + material(1) + "}]",
		"short material":    "keys: [{key_id: a, material: " + base64.StdEncoding.EncodeToString([]byte("short")) + "}]",
		"not base64":        "keys: [{key_id: a, material: '***'}]",
		"bad state":         "keys: [{key_id: a, material: " + material(1) + ", state: Gone}]",
		"duplicate name":    "keys: [{key_id: a, material: " + material(1) + "}, {key_id: b, aliases: [alias/a], material: " + material(2) + "}, {key_id: a, material: " + material(3) + "}]",
		"duplicate aliases": "keys: [{key_id: a, aliases: [alias/x], material: " + material(1) + "}, {key_id: b, aliases: [alias/x], material: " + material(2) + "}]",
		"not yaml":          "keys: [",
	} {
		if _, err := parse([]byte(text)); !errors.Is(err, ErrFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
	r, err := parse([]byte(`{"keys": [{"key_id": "a", "material": "` + material(1) + `"}]}`))
	if err != nil || r.byName["a"] == nil {
		t.Fatalf("JSON: %v", err)
	}
	if _, err := Open(Options{File: filepath.Join(t.TempDir(), "none")}); err == nil || !strings.Contains(err.Error(), "read keyring") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestDefaultSource: with a DefaultSource the generated key is the
// source's, never a file of the data directory: ErrNoDefault (not
// ErrNotFound) until the source holds it, then that key for Resolve and
// Keys; a keyring entry for alias/aws/kinesis still comes first.
func TestDefaultSource(t *testing.T) {
	dir := t.TempDir()
	k, err := Open(Options{DataDir: dir, Account: "111122223333"})
	if err != nil {
		t.Fatal(err)
	}
	var held []byte
	k.SetDefaultSource(func() ([]byte, bool) { return held, held != nil })
	if _, err := k.Resolve("alias/aws/kinesis", "us-east-1"); !errors.Is(err, ErrNoDefault) || errors.Is(err, ErrNotFound) {
		t.Fatalf("before the source has a key: %v", err)
	}
	if _, err := os.Stat(datadir.DefaultKeyPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("a key file was made: %v", err)
	}
	held = bytes.Repeat([]byte{9}, 32)
	m, err := k.Resolve("alias/aws/kinesis", "us-east-1")
	if err != nil || m.ID != fingerprint(t, 9) {
		t.Fatalf("Resolve: %v %v", m.ID, err)
	}
	if got, err := k.Keys()(fingerprint(t, 9)); err != nil || got.ID != m.ID {
		t.Fatalf("Keys: %v", err)
	}
	mapped, _ := testRing(t)
	mapped.SetDefaultSource(func() ([]byte, bool) { return held, true })
	if got, err := mapped.Resolve("alias/aws/kinesis", "us-east-1"); err != nil || got.ID != fingerprint(t, 1) {
		t.Fatalf("a keyring entry for the alias: %v %v", got.ID, err)
	}
}
