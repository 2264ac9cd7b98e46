package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/hashicorp/go-hclog"
)

// startPprof serves Go's profiling endpoints (/debug/pprof/) on
// --pprof-listen, never on the API listeners: profiles expose the server's
// internals and cost CPU while taken, so they are opt-in and meant for a
// loopback address. It returns the bound address (nil when the flag is
// unset) and a stop function.
func (o serveOptions) startPprof(log hclog.Logger) (net.Addr, func(), error) {
	if o.pprofListen == "" {
		return nil, func() {}, nil
	}
	ln, err := net.Listen("tcp", o.pprofListen)
	if err != nil {
		return nil, nil, fmt.Errorf("--pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: o.hardening.readHeaderTimeout,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof listener stopped", "error", err)
		}
	}()
	log.Info("serving Go profiles", "pprof_listen", ln.Addr().String())
	return ln.Addr(), func() { srv.Close() }, nil
}
