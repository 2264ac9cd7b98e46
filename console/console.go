// Package console serves shardlog's web console at /console/: static files
// embedded in the binary (no build step, nothing fetched from elsewhere),
// which read the server through the Kinesis API itself, as any client does
// (signed with SigV4 in the browser when --auth-file is on), plus two small
// read-only JSON documents of its own:
//
//   - /console/config.json: what the page cannot learn from the API (the
//     region to sign for, whether signing is required, the per-shard rate
//     limits in force);
//   - /console/counters.json: the per-stream (and per-shard) counters and
//     gauges of the Prometheus registry, from which the page draws its live
//     rates. It exposes what GET /metrics exposes on the same listener, to
//     whom /metrics exposes it (Config.Guard: --metrics-auth), no more: with
//     --metrics-listen, the metrics live elsewhere and the counters are off.
//
// The package imports no storage: everything the page shows, it read
// through the same doors as every other client.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:embed static
var static embed.FS

// Prefix is where the console lives; Wrap routes GET and HEAD requests under
// it to the console and everything else to the API, unchanged.
const Prefix = "/console/"

// Limits are one shard's rate limits in force (ratelimit.Kinesis scaled by
// --throttle-multiplier), before a stream's own scaling (its
// shardlog.throughput-multiplier tag, on-demand minimum), which the page
// applies itself from the stream's tags and mode.
type Limits struct {
	WriteRecords float64 `json:"writeRecords"`
	WriteBytes   float64 `json:"writeBytes"`
	ReadCalls    float64 `json:"readCalls"`
	ReadBytes    float64 `json:"readBytes"`
}

// Config is what the console needs from the server.
type Config struct {
	// Region is the region the page signs for (the server's --region).
	Region string
	// Auth is whether the API verifies signatures: the page then asks for
	// an access key and secret.
	Auth bool
	// Counters is the metrics registry the live rates come from; nil turns
	// them off.
	Counters prometheus.Gatherer
	// Guard, if set, decides who may read the counters, as GET /metrics
	// decides (--metrics-auth): false means it refused r and answered w.
	Guard func(w http.ResponseWriter, r *http.Request) bool
	// Limits are the per-shard limits; nil when throttling is off.
	Limits *Limits
	// Version is the server's version, shown in the page's footer.
	Version string
	// Now is the clock of counters.json's timestamps; default time.Now.
	Now func() time.Time
}

// handler serves the console's files and documents.
type handler struct {
	cfg   Config
	files map[string]file // by path below Prefix; "" is index.html
}

// file is an embedded file, read once: the set is small and fixed.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Wrap returns a handler that serves the console for GET and HEAD requests
// under /console/ and passes every other request to api untouched, so the
// Kinesis API's front end (its CORS answers and pre-dispatch checks) sees
// exactly what it saw before.
func Wrap(api http.Handler, cfg Config) http.Handler {
	h := newHandler(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isConsole(r) {
			h.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func isConsole(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, Prefix)
}

func newHandler(cfg Config) *handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &handler{cfg: cfg, files: map[string]file{}}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.files[p] = file{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // embedded files are readable
	}
	h.files[""] = h.files["index.html"]
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/console" {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	setSecurityHeaders(w.Header())
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	switch name {
	case "config.json":
		h.serveJSON(w, h.config())
		return
	case "counters.json":
		if h.cfg.Counters == nil {
			http.Error(w, "live counters are not served on this listener (see --metrics-listen)", http.StatusNotFound)
			return
		}
		if h.cfg.Guard != nil && !h.cfg.Guard(w, r) {
			return
		}
		c, err := gatherCounters(h.cfg.Counters, h.cfg.Now())
		if err != nil {
			http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h.serveJSON(w, c)
		return
	}
	f, ok := h.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	// Revalidated on every load, so an upgraded server's page is never
	// mixed with a cached older script.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Content-Type", f.contentType)
	http.ServeContent(w, r, name, time.Time{}, strings.NewReader(string(f.body)))
}

// setSecurityHeaders confines the page to its own origin: scripts, styles
// and requests come from the server only (no inline script), and no other
// site may frame it.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// configDoc is /console/config.json.
type configDoc struct {
	Region   string  `json:"region"`
	Auth     bool    `json:"auth"`
	Counters bool    `json:"counters"`
	Limits   *Limits `json:"limits"`
	Version  string  `json:"version"`
}

func (h *handler) config() configDoc {
	return configDoc{Region: h.cfg.Region, Auth: h.cfg.Auth, Counters: h.cfg.Counters != nil, Limits: h.cfg.Limits, Version: h.cfg.Version}
}

func (h *handler) serveJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
