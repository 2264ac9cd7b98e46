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
	"golang.org/x/net/netutil"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/console"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/ratelimit"
	"github.com/shardlog/shardlog/shard"
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
	// channels configures channel delivery (serve.go).
	channels channelOptions
	// subscriptionLifetime is how long a SubscribeToShard stream lasts.
	subscriptionLifetime time.Duration
	shardLimit           int
	accountID            string
	region               string
	logLevel             string
	logFormat            string
	sync                 string

	scalingPerDay int
	// onDemand are the on-demand flags: the account's ON_DEMAND stream
	// limit and the scaler's policy.
	onDemand onDemandOptions

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
	sharedSync         bool

	tls       tlsOptions
	hardening hardeningOptions
	// authFile, if set, is the --auth-file whose credentials every
	// request's SigV4 signature is verified against.
	authFile string
	// metricsListen, if set, serves GET /metrics there instead of on the
	// API listeners.
	metricsListen string
	// metricsAuth makes GET /metrics on the API listeners need a SigV4
	// signature (with --auth-file) allowed api.MetricsAction.
	metricsAuth bool
	// pprofListen, if set, serves /debug/pprof/ there (pprof.go).
	pprofListen string
	// engine, set by runServe, observes the storage engine for /metrics.
	engine shard.Observer
	// keyringFile, if set, is the --keyring of master keys for
	// StartStreamEncryption; keys, set by runServe, is the keyring read
	// from it (or, without the flag, the one that knows only
	// alias/aws/kinesis).
	keyringFile string
	keys        *keyring.Keyring
	// console serves the web console at /console/ on the API listeners.
	console bool
	// cluster are the cluster-mode flags (cluster.go).
	cluster clusterOptions
}

// onDemandOptions are the on-demand flags (storage/ondemand.go has the
// policy they tune).
type onDemandOptions struct {
	streamLimit int
	interval    time.Duration // 0: the scaler is off
	window      time.Duration
	splitAt     float64
	mergeBelow  float64
	mergeAfter  time.Duration
}

// defaultOnDemand are the on-demand flags' defaults: storage's.
func defaultOnDemand() onDemandOptions {
	return onDemandOptions{streamLimit: defaultOnDemandStreamLimit, interval: defaultScaleInterval, window: defaultScaleWindow,
		splitAt: defaultScaleSplitAt, mergeBelow: defaultScaleMergeBelow, mergeAfter: defaultScaleMergeAfter}
}

func addOnDemandFlags(cmd *cobra.Command, o *onDemandOptions) {
	d := defaultOnDemand()
	f := cmd.Flags()
	f.IntVar(&o.streamLimit, "on-demand-stream-limit", d.streamLimit, "ON_DEMAND streams allowed in the account (AWS: 50)")
	f.DurationVar(&o.interval, "on-demand-scale-interval", d.interval, "how often the on-demand scaler looks at the ON_DEMAND streams (0: never, the shards stay as they are)")
	f.DurationVar(&o.window, "on-demand-window", d.window, "how far back the on-demand scaler averages each shard's write rate")
	f.Float64Var(&o.splitAt, "on-demand-split-at", d.splitAt, "split an ON_DEMAND stream's shard whose write rate reaches this fraction of one shard's (1 MiB/s or 1,000 records/s)")
	f.Float64Var(&o.mergeBelow, "on-demand-merge-below", d.mergeBelow, "merge two adjacent shards whose write rates together stay below this fraction of one shard's for --on-demand-merge-after")
	f.DurationVar(&o.mergeAfter, "on-demand-merge-after", d.mergeAfter, "how long an ON_DEMAND stream must have cold adjacent shards before they are merged")
}

func (o onDemandOptions) check() error {
	switch {
	case o.streamLimit < 1:
		return fmt.Errorf("--on-demand-stream-limit must be at least 1, got %d", o.streamLimit)
	case o.interval < 0 || o.window <= 0 || o.mergeAfter <= 0:
		return errors.New("--on-demand-scale-interval must not be negative, --on-demand-window and --on-demand-merge-after must be positive")
	case !(o.splitAt > 0) || !(o.mergeBelow > 0) || o.mergeBelow >= o.splitAt: // also refuses NaN
		return fmt.Errorf("--on-demand-split-at and --on-demand-merge-below must be positive, merge-below under split-at (got %v, %v)", o.splitAt, o.mergeBelow)
	}
	return nil
}

// tlsOptions are the TLS flags. TLS is on with a certificate and key or
// with selfSigned; plain HTTP stays on --listen unless only is set.
type tlsOptions struct {
	cert, key  string
	selfSigned bool
	listen     string
	only       bool
}

func (t tlsOptions) enabled() bool { return t.cert != "" || t.selfSigned }

// hardeningOptions bound what one client can make the server hold.
type hardeningOptions struct {
	readHeaderTimeout time.Duration // a request's headers (and a TLS handshake)
	readTimeout       time.Duration // a whole request, body included
	idleTimeout       time.Duration // a keep-alive connection between requests
	maxConnections    int           // per listener; 0: unlimited
	maxHeaderBytes    int           // HTTP/1.1 header bytes; HTTP/2 header list size
	http2MaxStreams   uint32        // concurrent streams per HTTP/2 connection
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
			if o.cluster.enabled {
				open = openCluster
			}
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
	f.DurationVar(&o.channels.delay, "channel-delay", 500*time.Millisecond, "time a channel stays CREATING, UPDATING and DELETING (0 allowed)")
	f.StringVar(&o.channels.dir, "channel-dir", "", "directory channels deliver to: object KEY of bucket B is DIR/B/KEY (default <data-dir>/channels-out)")
	f.DurationVar(&o.channels.flushEvery, "channel-flush-every", 0, "deliver a channel's batch once its oldest record waited this long, if sooner than its DataFreshnessInSeconds (0: the channel's own)")
	f.BoolVar(&o.channels.anyMode, "channel-any-mode", false, "let channels read PROVISIONED streams too (AWS: ON_DEMAND streams only)")
	f.IntVar(&o.shardLimit, "shard-limit", defaultShardLimit, "open shards allowed in the account")
	f.StringVar(&o.accountID, "account-id", defaultAccountID, "12-digit account id used in ARNs and messages")
	f.StringVar(&o.region, "region", api.DefaultRegion, "region for requests without a SigV4 credential scope")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: json or text")
	f.StringVar(&o.sync, "sync", "always", "durability policy: always (ack after fdatasync) or interval (ack on write, sync every 50ms)")
	f.BoolVar(&o.sharedSync, "shared-sync", true, "shards whose syncs start together share one syncfs of the data directory's filesystem; false: every shard fdatasyncs its own segment")
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
	f.BoolVar(&o.controlPlaneLimits, "control-plane-limits", false, "enforce AWS's control-plane rates (e.g. DescribeStream 10/s) with LimitExceededException")
	f.StringVar(&o.authFile, "auth-file", "", "verify every request's SigV4 signature against the access keys in this YAML or JSON file (reloaded on SIGHUP); unset: any credentials work")
	f.StringVar(&o.keyringFile, "keyring", "", "master keys for StartStreamEncryption, by KeyId, in this YAML or JSON file (reloaded on SIGHUP); unset: only alias/aws/kinesis, with a key generated in the data directory")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics (GET /metrics) on this address instead of on the API listeners")
	f.StringVar(&o.pprofListen, "pprof-listen", "", "serve Go's profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; off by default")
	f.BoolVar(&o.metricsAuth, "metrics-auth", false, "with --auth-file: GET /metrics on the API listeners needs a SigV4 signature (service kinesis) by a key allowed the action "+api.MetricsAction)
	addOnDemandFlags(cmd, &o.onDemand)
	f.BoolVar(&o.console, "console", true, "serve the web console at /console/ on the API listeners")
	addTLSFlags(cmd, &o.tls)
	addHardeningFlags(cmd, &o.hardening)
	addClusterFlags(cmd, &o.cluster)
	return cmd
}

func addTLSFlags(cmd *cobra.Command, t *tlsOptions) {
	f := cmd.Flags()
	f.StringVar(&t.cert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS (h2 and http/1.1) on --tls-listen; reloaded on SIGHUP")
	f.StringVar(&t.key, "tls-key", "", "PEM private key file of --tls-cert; reloaded on SIGHUP")
	f.BoolVar(&t.selfSigned, "tls-self-signed", false, "serve HTTPS with a localhost certificate generated into <data-dir>/tls (trust <data-dir>/tls/ca.crt)")
	f.StringVar(&t.listen, "tls-listen", defaultTLSListen, "address to serve HTTPS on")
	f.BoolVar(&t.only, "tls-only", false, "serve HTTPS only: no plain HTTP on --listen")
}

func addHardeningFlags(cmd *cobra.Command, h *hardeningOptions) {
	d := defaultHardening()
	f := cmd.Flags()
	f.DurationVar(&h.readHeaderTimeout, "read-header-timeout", d.readHeaderTimeout, "time a client has to send a request's headers (and finish a TLS handshake)")
	f.DurationVar(&h.readTimeout, "read-timeout", d.readTimeout, "time a client has to send a whole request, body included (SubscribeToShard streams are exempt once the request is read)")
	f.DurationVar(&h.idleTimeout, "idle-timeout", d.idleTimeout, "time an idle keep-alive connection stays open")
	f.IntVar(&h.maxConnections, "max-connections", d.maxConnections, "connections served at once on each listener; more wait to be accepted (0: unlimited)")
	f.IntVar(&h.maxHeaderBytes, "max-header-bytes", d.maxHeaderBytes, "largest request header block (HTTP/1.1 headers, HTTP/2 header list)")
	f.Uint32Var(&h.http2MaxStreams, "http2-max-streams", d.http2MaxStreams, "concurrent streams a client may open on one HTTP/2 connection")
}

// defaultTLSListen is --tls-listen's default: next to --listen's port.
const defaultTLSListen = "127.0.0.1:4568"

// defaultHardening are the hardening flags' defaults: generous for real
// clients (a 10 MiB PutRecords body on a slow link), short for a client
// that only holds a connection.
func defaultHardening() hardeningOptions {
	return hardeningOptions{readHeaderTimeout: 10 * time.Second, readTimeout: 2 * time.Minute,
		idleTimeout: 2 * time.Minute, maxHeaderBytes: 64 << 10, http2MaxStreams: 250}
}

func (o serveOptions) check() error {
	switch {
	case len(o.accountID) != 12 || !allDigits(o.accountID):
		return fmt.Errorf("--account-id must be 12 digits, got %q", o.accountID)
	case o.shardLimit < 1:
		return fmt.Errorf("--shard-limit must be at least 1, got %d", o.shardLimit)
	case o.subscriptionLifetime <= 0:
		return fmt.Errorf("--subscription-lifetime must be positive, got %v", o.subscriptionLifetime)
	case o.createDelay < 0 || o.deleteDelay < 0 || o.updateDelay < 0 || o.consumerDelay < 0 || o.channels.delay < 0:
		return errors.New("stream, consumer and channel delays must not be negative")
	case o.channels.flushEvery < 0:
		return errors.New("--channel-flush-every must not be negative")
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
	case o.metricsAuth && o.authFile == "":
		return errors.New("--metrics-auth needs --auth-file (it checks signatures against its keys)")
	case o.metricsAuth && o.metricsListen != "":
		// --metrics-listen serves /metrics unauthenticated, elsewhere: the
		// pair would suggest a protection that is not there.
		return errors.New("--metrics-auth protects /metrics on the API listeners; with --metrics-listen it is served there instead, without authentication")
	}
	if err := o.onDemand.check(); err != nil {
		return err
	}
	if err := o.cluster.check(o); err != nil {
		return err
	}
	if err := o.tls.check(); err != nil {
		return err
	}
	return o.hardening.check()
}

func (t tlsOptions) check() error {
	switch {
	case (t.cert == "") != (t.key == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case t.selfSigned && t.cert != "":
		return errors.New("--tls-self-signed and --tls-cert exclude each other")
	case t.only && !t.enabled():
		return errors.New("--tls-only needs --tls-cert and --tls-key, or --tls-self-signed")
	}
	return nil
}

func (h hardeningOptions) check() error {
	switch {
	case h.readHeaderTimeout <= 0 || h.readTimeout <= 0 || h.idleTimeout <= 0:
		return errors.New("--read-header-timeout, --read-timeout and --idle-timeout must be positive")
	case h.maxConnections < 0:
		return fmt.Errorf("--max-connections must not be negative, got %d", h.maxConnections)
	case h.maxHeaderBytes < 4<<10:
		return fmt.Errorf("--max-header-bytes must be at least 4096, got %d", h.maxHeaderBytes)
	case h.http2MaxStreams < 1:
		return errors.New("--http2-max-streams must be at least 1")
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

// endpoints are the addresses the server listens on; plain or tls is nil
// when that listener is off. caFile, with --tls-self-signed, is the CA
// certificate clients trust.
type endpoints struct {
	plain, tls net.Addr
	metrics    net.Addr // nil unless --metrics-listen
	caFile     string
}

// failed is the channel on which a backend reports that it stopped for good
// (cluster.Node.Failed), or nil (never ready) for one that does not.
func failed(store api.Backend) <-chan error {
	if f, ok := store.(interface{ Failed() <-chan error }); ok {
		return f.Failed()
	}
	return nil
}

// runServe opens the store, serves until ctx is done, then stops accepting,
// lets in-flight requests finish, and closes the store. ready, if set, is
// told the bound addresses once the server accepts connections.
func runServe(ctx context.Context, o serveOptions, open storeOpener, log hclog.Logger, ready func(endpoints)) (err error) {
	verifier, err := loadAuth(o)
	if err != nil {
		return err
	}
	if o.keys, err = keyring.Open(keyring.Options{File: o.keyringFile, DataDir: o.dataDir, Account: o.accountID}); err != nil {
		return err
	}
	metrics := api.NewMetrics()
	o.engine = metrics.Engine()
	store, closer, err := open(ctx, o, log)
	if err != nil {
		return fmt.Errorf("open data directory %s: %w", o.dataDir, err)
	}
	defer func() {
		if cerr := closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	// After the store: its LOCK keeps two servers from generating at once.
	certs, caFile, err := o.tls.certificates(o.dataDir, log)
	if err != nil {
		return err
	}
	plain, tlsLn, err := o.listeners()
	if err != nil {
		return err
	}
	msrv, mln, err := o.metricsServer(metrics, log)
	if err != nil {
		closeAll(plain, tlsLn)
		return err
	}
	_, stopPprof, err := o.startPprof(log)
	if err != nil {
		closeAll(plain, tlsLn, mln)
		return err
	}
	defer stopPprof()
	srv := newHTTPServer(o, store, verifier, metrics, log)
	var reloaders []reloader
	if verifier != nil {
		reloaders = append(reloaders, reloader{name: "auth file", reload: verifier.Reload})
		log.Info("verifying SigV4 signatures", "auth_file", o.authFile, "credentials", verifier.Len())
	}
	if o.keyringFile != "" {
		reloaders = append(reloaders, reloader{name: "keyring", reload: o.keys.Reload})
		log.Info("encryption keys", "keyring", o.keyringFile)
	}
	if certs != nil {
		srv.TLSConfig = tlsConfig(certs)
		reloaders = append(reloaders, reloader{name: "TLS certificate", reload: certs.Reload})
	}
	stopReloads := reloadOnSIGHUP(ctx, log, reloaders)
	defer stopReloads()
	errc := make(chan error, 3)
	ep := endpoints{caFile: caFile}
	if mln != nil {
		ep.metrics = mln.Addr()
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close() // scrapes are short: no graceful wait
	}
	if plain != nil {
		ep.plain = plain.Addr()
		go func() { errc <- srv.Serve(plain) }()
	}
	if tlsLn != nil {
		ep.tls = tlsLn.Addr()
		go func() { errc <- srv.ServeTLS(tlsLn, "", "") }()
	}
	log.Info("serving the Kinesis API", "listen", addrString(ep.plain), "tls_listen", addrString(ep.tls), "metrics_listen", addrString(ep.metrics), "data_dir", o.dataDir, "version", versionString(), "gomaxprocs", runtime.GOMAXPROCS(0))
	if ready != nil {
		ready(ep)
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case err := <-failed(store):
		// A cluster node whose Raft host stopped (a failed write or
		// fdatasync) acknowledges nothing more and cannot serve fresh
		// reads; only a restart, which re-reads its disk, can tell what is
		// durable (docs/cluster.md §4). It exits non-zero so that its
		// supervisor restarts it, instead of answering as a live node.
		serveErr = fmt.Errorf("the storage engine stopped: %w; restart the server", err)
		log.Error("the storage engine stopped: shutting down", "error", err)
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped serving; closing the store")
	return nil
}

// closeAll closes the listeners that are open.
func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// certificates loads the TLS certificate, generating the self-signed one
// first if asked; nil when TLS is off. caFile is the generated CA.
func (t tlsOptions) certificates(dataDir string, log hclog.Logger) (src *certSource, caFile string, err error) {
	certFile, keyFile := t.cert, t.key
	if t.selfSigned {
		files, made, err := ensureSelfSigned(dataDir, time.Now())
		if err != nil {
			return nil, "", fmt.Errorf("--tls-self-signed: %w", err)
		}
		verb := "reusing the"
		if made {
			verb = "generated a new"
		}
		log.Info(verb+" self-signed localhost certificate; clients must trust its CA (e.g. aws --ca-bundle "+files.ca+")", "ca", files.ca)
		certFile, keyFile, caFile = files.cert, files.key, files.ca
	}
	if certFile == "" {
		return nil, "", nil
	}
	src, err = newCertSource(certFile, keyFile)
	return src, caFile, err
}

// listeners opens the plain listener unless --tls-only, and the TLS one
// (still TCP: ServeTLS wraps it) when TLS is on; each is capped at
// --max-connections. On error none is left open.
func (o serveOptions) listeners() (plain, tlsLn net.Listener, err error) {
	if !o.tls.only {
		if plain, err = o.hardening.listen(o.listen); err != nil {
			return nil, nil, err
		}
	}
	if o.tls.enabled() {
		if tlsLn, err = o.hardening.listen(o.tls.listen); err != nil {
			if plain != nil {
				plain.Close()
			}
			return nil, nil, fmt.Errorf("--tls-listen: %w", err)
		}
	}
	return plain, tlsLn, nil
}

// listen opens a TCP listener that accepts at most maxConnections
// connections at once: beyond that, new connections wait in the kernel's
// backlog until one closes, costing the server nothing.
func (h hardeningOptions) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || h.maxConnections == 0 {
		return ln, err
	}
	return netutil.LimitListener(ln, h.maxConnections), nil
}

// newHTTPServer serves HTTP/1.1, cleartext HTTP/2 (which the Java SDK's
// async client speaks) and, over TLS, h2 and http/1.1 by ALPN, with the
// hardening flags' limits. There is no write timeout: a SubscribeToShard
// stream writes for minutes (it ends its writes itself, see api).
//
// Requests reach a shard's writer only after their body is read whole
// (wire.ReadBody), so a slow client holds a handler goroutine and a
// connection, bounded by these timeouts, never a shard.
func newHTTPServer(o serveOptions, store api.Backend, verifier *auth.Verifier, metrics *api.Metrics, log hclog.Logger) *http.Server {
	cfg := api.Config{Region: o.region, Logger: log.Named("api"), Auth: verifier,
		Now: o.now, SubscriptionLifetime: o.subscriptionLifetime, SubscribeRate: o.subscribeRate(),
		Metrics: metrics, MetricsElsewhere: o.metricsListen != "", MetricsAuth: o.metricsAuth}
	if o.controlPlaneLimits {
		cfg.Admission = api.NewControlPlaneLimits(ratelimit.KinesisControl, o.accountID, nil)
	}
	handler := api.New(cfg, store)
	var front http.Handler = o.withConsole(handler, verifier != nil, metrics)
	if c, ok := store.(interface {
		Handler(http.Handler) http.Handler
	}); ok {
		front = c.Handler(front) // cluster mode's internal endpoints (forwarding)
	}
	h := o.hardening
	srv := &http.Server{
		Handler:           front,
		ReadHeaderTimeout: h.readHeaderTimeout,
		ReadTimeout:       h.readTimeout,
		IdleTimeout:       h.idleTimeout,
		MaxHeaderBytes:    h.maxHeaderBytes,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		ConnState:         metrics.ConnState,
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(h.http2MaxStreams),
			// HPACK's default table: a client cannot make the decoder
			// keep more state than every HTTP/2 peer expects.
			MaxDecoderHeaderTableSize: 4096,
		},
	}
	// Shutdown waits for handlers but cancels none: subscriptions, which
	// would run out their lifetime, are ended here.
	srv.RegisterOnShutdown(handler.Close)
	if c, ok := store.(interface{ EndStreams() }); ok {
		srv.RegisterOnShutdown(c.EndStreams) // cluster mode's forwarded subscriptions
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.Protocols.SetHTTP2(true)
	return srv
}

// withConsole mounts the web console in front of the API, unless --console=false.
// Its live counters come from the registry /metrics serves, only where
// /metrics is served (with --metrics-listen they are elsewhere), and to
// whom it is served (--metrics-auth).
func (o serveOptions) withConsole(apiHandler *api.Server, auth bool, metrics *api.Metrics) http.Handler {
	if !o.console {
		return apiHandler
	}
	cfg := console.Config{Region: o.region, Auth: auth, Version: versionString(), Now: o.now, Guard: apiHandler.GuardMetrics}
	if o.metricsListen == "" {
		cfg.Counters = metrics.Registry()
	}
	if o.throttle {
		l := ratelimit.Kinesis.Scale(o.throttleMultiplier)
		cfg.Limits = &console.Limits{WriteRecords: l.WriteRecords, WriteBytes: l.WriteBytes, ReadCalls: l.ReadCalls, ReadBytes: l.ReadBytes}
	}
	return console.Wrap(apiHandler, cfg)
}

// metricsServer listens on --metrics-listen and serves GET /metrics there;
// all nil when the flag is unset.
func (o serveOptions) metricsServer(m *api.Metrics, log hclog.Logger) (*http.Server, net.Listener, error) {
	if o.metricsListen == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	h := o.hardening
	return &http.Server{Handler: mux, ReadHeaderTimeout: h.readHeaderTimeout, ReadTimeout: h.readTimeout,
		IdleTimeout: h.idleTimeout, MaxHeaderBytes: h.maxHeaderBytes,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}, ln, nil
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
