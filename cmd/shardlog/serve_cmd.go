package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/ratelimit"
)

// serveOptions are the flags of `shardlog serve`.
type serveOptions struct {
	listen      string
	dataDir     string
	createDelay time.Duration
	deleteDelay time.Duration
	updateDelay time.Duration
	// consumerDelay is how long a consumer stays CREATING, and DELETING.
	consumerDelay time.Duration
	// subscriptionLifetime is how long a SubscribeToShard stream lasts.
	subscriptionLifetime time.Duration
	shardLimit           int
	accountID            string
	region               string
	logLevel             string
	logFormat            string
	sync                 string

	scalingPerDay int

	segmentSize int64
	segmentAge  time.Duration
	cacheWindow int64

	// Test hooks, hidden from --help: the crash test uses them to make
	// retention delete segments while the server is being killed.
	clockOffset    time.Duration
	retentionEvery time.Duration

	throttle           bool
	throttleMultiplier float64
	injectThrottleRate float64
	controlPlaneLimits bool
	gomaxprocs         int

	// authFile, if set, is the --auth-file whose credentials every
	// request's SigV4 signature is verified against.
	authFile string
}

// storeOpener opens the storage engine: the Backend the API serves and the
// Closer that syncs and closes it after the last request.
type storeOpener func(ctx context.Context, o serveOptions, log hclog.Logger) (api.Backend, io.Closer, error)

// shutdownTimeout bounds how long in-flight requests may take to finish.
const shutdownTimeout = 30 * time.Second

func newServeCmd(open storeOpener) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Kinesis API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.logLevel, o.logFormat, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := o.check(); err != nil {
				return err
			}
			_, envSet := os.LookupEnv("GOMAXPROCS")
			runtime.GOMAXPROCS(o.schedulerProcs(envSet, runtime.GOMAXPROCS(0)))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal during shutdown kills the process at once
			}()
			return runServe(ctx, o, open, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:4567", "address to serve the Kinesis API on")
	f.StringVar(&o.dataDir, "data-dir", "./shardlog-data", "directory holding the streams")
	f.DurationVar(&o.createDelay, "create-stream-delay", 500*time.Millisecond, "time a new stream stays CREATING (0 allowed)")
	f.DurationVar(&o.deleteDelay, "delete-stream-delay", 500*time.Millisecond, "time a deleted stream stays DELETING (0 allowed)")
	f.DurationVar(&o.updateDelay, "update-stream-delay", 500*time.Millisecond, "time an updated stream stays UPDATING (0 allowed)")
	f.DurationVar(&o.subscriptionLifetime, "subscription-lifetime", api.DefaultSubscriptionLifetime, "how long a SubscribeToShard stream lasts before the server ends it (AWS: 5m)")
	f.DurationVar(&o.consumerDelay, "consumer-delay", 500*time.Millisecond, "time a registered consumer stays CREATING, and a deregistered one DELETING (0 allowed)")
	f.IntVar(&o.shardLimit, "shard-limit", defaultShardLimit, "open shards allowed in the account")
	f.StringVar(&o.accountID, "account-id", defaultAccountID, "12-digit account id used in ARNs and messages")
	f.StringVar(&o.region, "region", api.DefaultRegion, "region for requests without a SigV4 credential scope")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: json or text")
	f.StringVar(&o.sync, "sync", "always", "durability policy: always (ack after fdatasync) or interval (ack on write, sync every 50ms)")
	f.IntVar(&o.scalingPerDay, "scaling-calls-per-day", defaultScalingPerDay, "UpdateShardCount calls allowed per stream in any 24 hours (AWS: 10)")
	f.Int64Var(&o.segmentSize, "segment-size", defaultSegmentSize, "roll a shard's segment file when it would exceed this many bytes")
	f.DurationVar(&o.segmentAge, "segment-age", defaultSegmentAge, "roll a non-empty segment file this old")
	f.Int64Var(&o.cacheWindow, "cache-window", defaultCacheWindow, "bytes of each shard's newest synced data left in the OS page cache; older pages are dropped (-1: never drop)")
	f.DurationVar(&o.clockOffset, "debug-clock-offset", 0, "shift the server's clock (tests only)")
	f.DurationVar(&o.retentionEvery, "debug-retention-interval", time.Minute, "how often retention runs (tests only)")
	f.MarkHidden("debug-clock-offset")
	f.MarkHidden("debug-retention-interval")
	f.BoolVar(&o.throttle, "throttle", true, "enforce Kinesis's per-shard rates (1,000 records/s and 1 MiB/s write; 5 calls/s and 2 MiB/s read)")
	f.Float64Var(&o.throttleMultiplier, "throttle-multiplier", 1, "scale every per-shard rate by this factor")
	f.Float64Var(&o.injectThrottleRate, "inject-throttle-rate", 0, "throttle this fraction (0-1) of data-plane calls at random, to test clients' backoff")
	f.IntVar(&o.gomaxprocs, "gomaxprocs", 0, "Go scheduler threads (GOMAXPROCS); 0: the CPU count but at least 8, unless the GOMAXPROCS variable is set")
	f.StringVar(&o.authFile, "auth-file", "", "verify every request's SigV4 signature against the access keys in this YAML or JSON file (reloaded on SIGHUP); unset: any credentials work")
	f.BoolVar(&o.controlPlaneLimits, "control-plane-limits", false, "enforce AWS's control-plane rates (e.g. DescribeStream 10/s) with LimitExceededException")
	return cmd
}

func (o serveOptions) check() error {
	switch {
	case len(o.accountID) != 12 || !allDigits(o.accountID):
		return fmt.Errorf("--account-id must be 12 digits, got %q", o.accountID)
	case o.shardLimit < 1:
		return fmt.Errorf("--shard-limit must be at least 1, got %d", o.shardLimit)
	case o.subscriptionLifetime <= 0:
		return fmt.Errorf("--subscription-lifetime must be positive, got %v", o.subscriptionLifetime)
	case o.createDelay < 0 || o.deleteDelay < 0 || o.updateDelay < 0 || o.consumerDelay < 0:
		return errors.New("stream and consumer delays must not be negative")
	case o.region == "":
		return errors.New("--region must not be empty")
	case o.scalingPerDay < 1:
		return fmt.Errorf("--scaling-calls-per-day must be at least 1, got %d", o.scalingPerDay)
	case o.segmentSize < 4<<10 || o.segmentAge <= 0:
		return fmt.Errorf("--segment-size must be at least 4096 and --segment-age positive")
	case o.gomaxprocs < 0:
		return fmt.Errorf("--gomaxprocs must not be negative, got %d", o.gomaxprocs)
	case o.cacheWindow != -1 && o.cacheWindow < 1<<20:
		return fmt.Errorf("--cache-window must be -1 or at least 1048576, got %d", o.cacheWindow)
	case !(o.throttleMultiplier > 0): // also refuses NaN
		return fmt.Errorf("--throttle-multiplier must be positive, got %v", o.throttleMultiplier)
	case !(o.injectThrottleRate >= 0 && o.injectThrottleRate <= 1): // also refuses NaN
		return fmt.Errorf("--inject-throttle-rate must be between 0 and 1, got %v", o.injectThrottleRate)
	}
	return nil
}

// minProcs is the least GOMAXPROCS the server runs with by default, however
// few the CPUs. Every shard's syncer spends its life blocked in fdatasync, and
// a goroutine coming back from a blocking system call waits for a free P
// behind every runnable request handler, which on a 2-core machine put that
// wait on every acknowledgement. With 8 Ps on 2 cores the same 64 writers
// appended 2x as many records per second to 16 and to 256 shards
// (BenchmarkAppend -cpu=2,8: 15,600 -> 31,400 and 11,400 -> 24,900
// records/s), and the fdatasync call itself, as the syncer sees it, went from
// 1.45 to 0.80 ms. Through HTTP, PutRecord with 64 clients gained 9% and
// PutRecords was unchanged (BENCHMARKS.md).
const minProcs = 8

// schedulerProcs is the GOMAXPROCS to run with: the flag if given, else the
// runtime's choice if the GOMAXPROCS variable set it, else at least minProcs.
func (o serveOptions) schedulerProcs(envSet bool, current int) int {
	switch {
	case o.gomaxprocs > 0:
		return o.gomaxprocs
	case envSet:
		return current
	}
	return max(current, minProcs)
}

// now is the server's clock: the real one, shifted by the hidden
// --debug-clock-offset, shared by storage and the api so that both judge
// times alike.
func (o serveOptions) now() time.Time { return time.Now().Add(o.clockOffset) }

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// runServe opens the store, serves until ctx is done, then stops accepting,
// lets in-flight requests finish, and closes the store. ready, if set, is
// told the bound address once the server accepts connections.
func runServe(ctx context.Context, o serveOptions, open storeOpener, log hclog.Logger, ready func(net.Addr)) (err error) {
	verifier, err := loadAuth(o)
	if err != nil {
		return err
	}
	store, closer, err := open(ctx, o, log)
	if err != nil {
		return fmt.Errorf("open data directory %s: %w", o.dataDir, err)
	}
	defer func() {
		if cerr := closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := newHTTPServer(o, store, verifier, log)
	stopHangups := handleHangups(log, reloaders(verifier))
	defer stopHangups()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if verifier != nil {
		log.Info("verifying SigV4 signatures", "auth_file", o.authFile, "credentials", verifier.Len())
	}
	log.Info("serving the Kinesis API", "listen", ln.Addr().String(), "data_dir", o.dataDir, "version", versionString(), "gomaxprocs", runtime.GOMAXPROCS(0))
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped serving; closing the store")
	return nil
}

// newHTTPServer sets timeouts against slow clients (headers must arrive
// within 10 s) and serves HTTP/1.1 plus cleartext HTTP/2, which the Java
// SDK's async client speaks.
func newHTTPServer(o serveOptions, store api.Backend, verifier *auth.Verifier, log hclog.Logger) *http.Server {
	cfg := api.Config{Region: o.region, Logger: log.Named("api"), Auth: verifier,
		Now: o.now, SubscriptionLifetime: o.subscriptionLifetime, SubscribeRate: o.subscribeRate()}
	if o.controlPlaneLimits {
		cfg.Admission = api.NewControlPlaneLimits(ratelimit.KinesisControl, o.accountID, nil)
	}
	handler := api.New(cfg, store)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		Protocols:         new(http.Protocols),
	}
	// Shutdown waits for handlers but cancels none: subscriptions, which
	// would run out their lifetime, are ended here.
	srv.RegisterOnShutdown(handler.Close)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// newLogger builds the hclog logger for --log-level and --log-format.
func newLogger(level, format string, out io.Writer) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level must be trace, debug, info, warn or error, got %q", level)
	}
	if format != "json" && format != "text" {
		return nil, fmt.Errorf("--log-format must be json or text, got %q", format)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "shardlog", Level: lvl, JSONFormat: format == "json", Output: out}), nil
}

// subscribeRate is each SubscribeToShard stream's pace: AWS's dedicated
// 2 MiB/s scaled like the per-shard rates, or unlimited without throttling.
func (o serveOptions) subscribeRate() float64 {
	if !o.throttle {
		return -1
	}
	return api.DefaultSubscribeRate * o.throttleMultiplier
}
