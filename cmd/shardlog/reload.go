package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api/auth"
)

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

// reloader re-reads one piece of the server's configuration (certificates,
// credentials) from its files. A reload that fails must leave the previous
// state in force and say why.
type reloader struct {
	name   string
	reload func() error
}

// reloadOnSIGHUP calls every reloader each time the process receives
// SIGHUP, until ctx ends. It is the one place the server handles SIGHUP;
// a new reloadable file adds a reloader to the list runServe builds. With
// no reloaders SIGHUP keeps its default effect (it ends the process).
// The returned func stops listening; call it before runServe returns.
func reloadOnSIGHUP(ctx context.Context, log hclog.Logger, reloaders []reloader) (stop func()) {
	if len(reloaders) == 0 {
		return func() {}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGHUP)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case <-sigc:
				reloadAll(log, reloaders)
			}
		}
	}()
	return func() {
		signal.Stop(sigc)
		close(quit)
		<-done
	}
}

// reloadAll runs each reloader once and logs its outcome; one failing does
// not stop the others.
func reloadAll(log hclog.Logger, reloaders []reloader) {
	for _, r := range reloaders {
		if err := r.reload(); err != nil {
			log.Error("SIGHUP: reload failed; keeping the previous one", "what", r.name, "error", err)
			continue
		}
		log.Info("SIGHUP: reloaded", "what", r.name)
	}
}
