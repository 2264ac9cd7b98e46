package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api/auth"
)

// reloader is something SIGHUP re-reads from disk.
type reloader struct {
	name   string
	reload func() error
}

// loadAuth loads --auth-file, if given; nil means no verification.
func loadAuth(o serveOptions) (*auth.Verifier, error) {
	if o.authFile == "" {
		return nil, nil
	}
	v, err := auth.Load(o.authFile, o.accountID)
	if err != nil {
		return nil, fmt.Errorf("--auth-file: %w", err)
	}
	return v, nil
}

// reloaders lists what SIGHUP reloads: the auth file when there is one.
func reloaders(v *auth.Verifier) []reloader {
	var rs []reloader
	if v != nil {
		rs = append(rs, reloader{name: "auth file", reload: v.Reload})
	}
	return rs
}

// handleHangups is the one place SIGHUP is handled: each signal reloads
// every reloader in turn and logs the outcome (a reloader that fails keeps
// what it had). With nothing to reload SIGHUP is left alone. The returned
// function stops the handling.
func handleHangups(log hclog.Logger, rs []reloader) (stop func()) {
	if len(rs) == 0 {
		return func() {}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-sig:
				reloadAll(log, rs)
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-finished
	}
}

func reloadAll(log hclog.Logger, rs []reloader) {
	for _, r := range rs {
		if err := r.reload(); err != nil {
			log.Error("SIGHUP: reload failed; the previous contents stay in force", "what", r.name, "error", err)
			continue
		}
		log.Info("SIGHUP: reloaded", "what", r.name)
	}
}
