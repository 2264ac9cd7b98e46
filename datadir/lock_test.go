package datadir

import (
	"errors"
	"os"
	"testing"
)

// TestLock: flock locks belong to open files, so two locks taken in one
// process conflict as two processes' would.
func TestLock(t *testing.T) {
	type step struct {
		take    string // "ex" or "sh"
		wantErr bool
	}
	tests := []struct {
		name  string
		held  string // the lock held first
		steps []step
	}{
		{"exclusive excludes exclusive", "ex", []step{{"ex", true}}},
		{"exclusive excludes shared", "ex", []step{{"sh", true}}},
		{"shared excludes exclusive", "sh", []step{{"ex", true}}},
		{"shared admits shared", "sh", []step{{"sh", false}, {"sh", false}}},
	}
	take := func(dir, how string) (*Lock, error) {
		if how == "ex" {
			return LockExclusive(dir)
		}
		return LockShared(dir)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(LockPath(dir), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			first, err := take(dir, tt.held)
			if err != nil || first == nil {
				t.Fatalf("first lock: %v, %v", first, err)
			}
			for _, s := range tt.steps {
				l, err := take(dir, s.take)
				if s.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrLocked)) {
					t.Fatalf("%s lock beside a %s one: %v", s.take, tt.held, err)
				}
				defer l.Release()
			}
			if err := first.Release(); err != nil {
				t.Fatal(err)
			}
			if tt.steps[0].wantErr {
				l, err := take(dir, tt.steps[0].take)
				if err != nil {
					t.Fatalf("%s lock after release: %v", tt.steps[0].take, err)
				}
				l.Release()
			}
		})
	}
}

// TestLockSharedWithoutLockFile: no LOCK means no server ever ran; verify
// proceeds without a lock and creates nothing.
func TestLockSharedWithoutLockFile(t *testing.T) {
	dir := t.TempDir()
	l, err := LockShared(dir)
	if err != nil || l != nil {
		t.Fatalf("LockShared without LOCK: %v, %v", l, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(LockPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("LockShared created LOCK: %v", err)
	}
}

func TestLockExclusiveCreatesLockFile(t *testing.T) {
	dir := t.TempDir()
	l, err := LockExclusive(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := os.Stat(LockPath(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := LockExclusive(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: %v, want ErrLocked", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestLockMissingDir(t *testing.T) {
	if _, err := LockExclusive(t.TempDir() + "/absent"); err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("lock in a missing directory: %v", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(t.TempDir() + "/absent"); !os.IsNotExist(err) {
		t.Fatalf("SyncDir of a missing directory: %v", err)
	}
}
