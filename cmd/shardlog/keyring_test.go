package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api"
)

// TestServeKeyring: --keyring is read before the store opens (a bad file
// stops the server with the reason), and the keyring reaches the store.
func TestServeKeyring(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("keys: [{key_id: a, material: short}]\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("keys: [{key_id: a, material: "+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+"}]\n"), 0o600)

	o := testOptions()
	o.keyringFile = bad
	opened := false
	open := func(_ context.Context, so serveOptions, _ hclog.Logger) (api.Backend, io.Closer, error) {
		opened = true
		if _, err := so.keys.Resolve("a", "us-east-1"); err != nil {
			t.Errorf("the store got a keyring without the file's key: %v", err)
		}
		return stubBackend{}, &countingCloser{}, nil
	}
	err := runServe(context.Background(), o, open, hclog.NewNullLogger(), nil)
	if err == nil || !strings.Contains(err.Error(), "keyring") || opened {
		t.Fatalf("bad keyring: %v (store opened %t)", err, opened)
	}
	o.keyringFile = good
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, open, hclog.NewNullLogger(), func(endpoints) { cancel() }) }()
	if err := <-done; err != nil || !opened {
		t.Fatalf("good keyring: %v (store opened %t)", err, opened)
	}
}
