package channel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Destination is where a channel's objects go: an S3 bucket, as shardlog
// maps it. Put must be atomic (an object exists whole or not at all) and
// durable when it returns.
type Destination interface {
	Put(ctx context.Context, bucket, key string, body []byte) error
	Exists(ctx context.Context, bucket, key string) (bool, error)
	Remove(ctx context.Context, bucket, key string) error
}

// Dir is a Destination in a local directory: object KEY of bucket BUCKET is
// the file Dir/BUCKET/KEY. Put writes a temporary file beside it, fsyncs
// it, renames it into place and fsyncs the directories it created, so an
// object is never seen half written and survives a power cut once Put
// returns.
type Dir string

// path maps an object to its file: each "/"-separated part of the key is a
// path element. S3 keys may hold parts a file system cannot name ("", ".",
// "..", as a channel named "." or a prefix ending in "/" make): those are
// written with their dots and the empty part percent-encoded ("%2E", "%2E%2E",
// "%2F" for an empty part), so every key has a file and none leaves the
// directory. A bucket name is one such part too (S3's rules allow none of
// them; this only keeps a bad one inside).
func (d Dir) path(bucket, key string) (string, error) {
	parts := strings.Split(key, "/")
	for i, part := range parts {
		parts[i] = fileName(part)
	}
	if strings.ContainsRune(bucket, '/') {
		return "", fmt.Errorf("channel: bucket %q has no directory name here", bucket)
	}
	return filepath.Join(append([]string{string(d), fileName(bucket)}, parts...)...), nil
}

// fileName is a key part as a file name (see path). A part that is already
// "%2E", "%2E%2E" or "%2F" cannot be told from an encoded one; such keys
// share a file, which no channel's key template produces.
func fileName(part string) string {
	switch part {
	case "":
		return "%2F"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return part
}

func (d Dir) Put(ctx context.Context, bucket, key string, body []byte) error {
	p, err := d.path(bucket, key)
	if err != nil {
		return err
	}
	created, err := mkdirAll(filepath.Dir(p))
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+randomHex())
	if err := writeSynced(tmp, body); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	// The object's directory records the rename; each directory created
	// is recorded by its parent.
	for _, dir := range append([]string{filepath.Dir(p)}, created...) {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func (d Dir) Exists(ctx context.Context, bucket, key string) (bool, error) {
	p, err := d.path(bucket, key)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (d Dir) Remove(ctx context.Context, bucket, key string) error {
	p, err := d.path(bucket, key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// mkdirAll makes dir and its missing parents, returning the parents of the
// directories it made (each must be synced to keep its new entry).
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	parents := make([]string, 0, len(missing))
	for _, p := range missing {
		parents = append(parents, filepath.Dir(p))
	}
	return parents, nil
}

func writeSynced(path string, body []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
