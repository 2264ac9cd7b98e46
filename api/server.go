// Package api is shardlog's Kinesis Data Streams HTTP API: the data- and
// control-plane operations on top of a Backend (storage), run after AWS's
// pre-dispatch checks. Everything about AWS's bytes (codecs, error bodies,
// validation texts, tokens) is in package wire; this package decides what
// each operation does, and maps storage's results and errors to wire's shapes
// (errors.go is the one place storage errors become AWS error types).
package api

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/policy"
)

// Server is an http.Handler speaking the Kinesis API (Kinesis_20131202).
type Server struct {
	cfg     Config
	b       Backend
	keys    wire.TokenKeys
	account string // b.AccountID(), read once
	subs    *subscriptions
	// policies caches parsed identity and resource policies (authz.go).
	policies policyCache
	metrics  *Metrics
}

// New returns a Server over b. b.IteratorKey() is read once: it keys the shard
// iterators and pagination tokens.
func New(cfg Config, b Backend) *Server {
	cfg = cfg.withDefaults()
	if src, ok := b.(StatsSource); ok {
		cfg.Metrics.attach(src)
	}
	return &Server{cfg: cfg, b: b, keys: wire.DeriveTokenKeys(b.IteratorKey()), account: b.AccountID(),
		subs: newSubscriptions(), metrics: cfg.Metrics}
}

type opFunc func(s *Server, rc *reqCtx, body []byte) (any, error)

// operations are the Kinesis operations shardlog implements. Any other target,
// including Kinesis operations not implemented yet, is answered
// UnknownOperationException.
var operations = map[string]opFunc{
	"CreateStream":                  (*Server).createStream,
	"DeleteStream":                  (*Server).deleteStream,
	"ListStreams":                   (*Server).listStreams,
	"DescribeStream":                (*Server).describeStream,
	"DescribeStreamSummary":         (*Server).describeStreamSummary,
	"DescribeLimits":                (*Server).describeLimits,
	"IncreaseStreamRetentionPeriod": (*Server).increaseRetention,
	"DecreaseStreamRetentionPeriod": (*Server).decreaseRetention,
	"ListShards":                    (*Server).listShards,
	"PutRecord":                     (*Server).putRecord,
	"PutRecords":                    (*Server).putRecords,
	"PutResourcePolicy":             (*Server).putResourcePolicy,
	"GetResourcePolicy":             (*Server).getResourcePolicy,
	"DeleteResourcePolicy":          (*Server).deleteResourcePolicy,
	"GetShardIterator":              (*Server).getShardIterator,
	"GetRecords":                    (*Server).getRecords,
	"AddTagsToStream":               (*Server).addTags,
	"RemoveTagsFromStream":          (*Server).removeTags,
	"ListTagsForStream":             (*Server).listTags,
	"SplitShard":                    (*Server).splitShard,
	"MergeShards":                   (*Server).mergeShards,
	"UpdateShardCount":              (*Server).updateShardCount,
	"UpdateMaxRecordSize":           (*Server).updateMaxRecordSize,
	"RegisterStreamConsumer":        (*Server).registerConsumer,
	"DescribeStreamConsumer":        (*Server).describeConsumer,
	"ListStreamConsumers":           (*Server).listConsumers,
	"DeregisterStreamConsumer":      (*Server).deregisterConsumer,
	"SubscribeToShard":              (*Server).subscribeToShard,
	"CreateChannel":                 (*Server).createChannel,
	"DescribeChannel":               (*Server).describeChannel,
	"ListChannels":                  (*Server).listChannels,
	"UpdateChannel":                 (*Server).updateChannel,
	"DeleteChannel":                 (*Server).deleteChannel,

	// Tags by ResourceARN (resource_tags.go) and record distribution
	// (distribution.go).
	"TagResource":         (*Server).tagResource,
	"UntagResource":       (*Server).untagResource,
	"ListTagsForResource": (*Server).listTagsForResource,

	"UpdateStreamRecordDistributionStrategy": (*Server).updateDistribution,
	"EnableEnhancedMonitoring":               (*Server).enableEnhancedMonitoring,
	"DisableEnhancedMonitoring":              (*Server).disableEnhancedMonitoring,
	"UpdateStreamMode":                       (*Server).updateStreamMode,
	"UpdateStreamWarmThroughput":             (*Server).updateStreamWarmThroughput,
	"DescribeAccountSettings":                (*Server).describeAccountSettings,
	"UpdateAccountSettings":                  (*Server).updateAccountSettings,
	"StartStreamEncryption":                  (*Server).startEncryption,
	"StopStreamEncryption":                   (*Server).stopEncryption,
}

// reqCtx is the state of one request.
type reqCtx struct {
	ctx    context.Context
	w      http.ResponseWriter
	r      *http.Request
	id     string
	op     string
	region string
	codec  wire.Codec
	start  time.Time
	status int
	errMsg string
	// errType is the AWS error type answered, "" on success.
	errType string
	wrote   bool
	// ours marks shardlog's own endpoints (/health, /metrics): outside the
	// AWS surface, they are not counted as requests.
	ours bool
	// identity is who signed the request, verified against Config.Auth;
	// nil when verification is off, and then every operation is allowed.
	identity *auth.Identity
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := &reqCtx{ctx: r.Context(), w: w, r: r, id: wire.NewRequestID(), codec: wire.JSON11, start: time.Now(), region: s.cfg.Region}
	s.metrics.inFlight.Inc()
	defer s.finish(rc)
	s.serve(rc)
}

// serve runs AWS's pre-dispatch checks in AWS's order (wire.Front lists
// them), then the operation. shardlog's own GET /health comes first: it is
// outside the AWS surface.
func (s *Server) serve(rc *reqCtx) {
	r := rc.r
	wire.SetRequestIDs(rc.w.Header(), r, rc.id)
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		s.health(rc)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/metrics" && !s.cfg.MetricsElsewhere {
		s.serveMetrics(rc)
		return
	}
	if wire.CORS(rc.w.Header(), r) {
		rc.status, rc.wrote = http.StatusOK, true
		rc.w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		s.writeReply(rc, wire.AccessDenied())
		return
	}
	front := wire.ReadFront(r.Header, isOperation)
	rc.codec = front.Codec
	body, release, aerr := wire.ReadBody(rc.w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		s.writeError(rc, aerr)
		return
	}
	defer release()
	region, authErr := wire.CheckAuth(r)
	if rep := front.Check(body, authErr); rep != nil {
		s.writeReply(rc, rep)
		return
	}
	rc.op, rc.region = front.Op, region
	if s.cfg.Auth != nil {
		id, aerr := s.cfg.Auth.Verify(r, body, s.now())
		if aerr != nil {
			s.writeError(rc, aerr)
			return
		}
		rc.identity = id
	}
	out, err := operations[rc.op](s, rc, body)
	if err != nil {
		s.writeError(rc, toAPIError(err, rc.region))
		return
	}
	if _, done := out.(streamed); done {
		return
	}
	s.writeOutput(rc, out)
}

func isOperation(name string) bool {
	_, ok := operations[name]
	return ok
}

// health answers GET /health while the server is serving.
func (s *Server) health(rc *reqCtx) {
	rc.ours = true
	rc.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc.status = http.StatusOK
	rc.wrote = true
	rc.w.WriteHeader(http.StatusOK)
	_, _ = rc.w.Write([]byte("ok\n"))
}

// serveMetrics answers GET /metrics with the registry's exposition; with
// Config.MetricsAuth, only to a signed request that may scrape.
func (s *Server) serveMetrics(rc *reqCtx) {
	rc.ours = true
	if s.cfg.Auth != nil && s.cfg.MetricsAuth {
		if e := s.authorizeMetrics(rc); e != nil {
			s.writeError(rc, e)
			return
		}
	}
	rw := &statusRecorder{ResponseWriter: rc.w, status: http.StatusOK}
	s.metrics.Handler().ServeHTTP(rw, rc.r)
	rc.status, rc.wrote = rw.status, true
}

// GuardMetrics lets r read what GET /metrics shows, as /metrics would:
// always without Config.MetricsAuth; with it, only when r is signed by a key
// allowed MetricsAction. Refused, it answers w with AWS's error and reports
// false. The web console's live counters (package console) go through it,
// so that they are no way around --metrics-auth.
func (s *Server) GuardMetrics(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Auth == nil || !s.cfg.MetricsAuth {
		return true
	}
	rc := &reqCtx{ctx: r.Context(), w: w, r: r, id: wire.NewRequestID(), codec: wire.JSON11, start: time.Now(), region: s.cfg.Region, ours: true}
	wire.SetRequestIDs(w.Header(), r, rc.id)
	if e := s.authorizeMetrics(rc); e != nil {
		s.writeError(rc, e)
		return false
	}
	return true
}

// MetricsAction is the IAM action a signed GET /metrics needs under
// Config.MetricsAuth, on resource "*". It is shardlog's own, not Kinesis's,
// so "kinesis:*" does not grant it: metrics name every stream, and a key
// allowed to write one stream need not see them all.
const MetricsAction = "shardlog:GetMetrics"

// authorizeMetrics verifies a GET /metrics' SigV4 signature (service
// kinesis, like every request; a GET has no body) and its signer's right to
// MetricsAction.
func (s *Server) authorizeMetrics(rc *reqCtx) *wire.Error {
	id, e := s.cfg.Auth.Verify(rc.r, nil, s.now())
	if e != nil {
		return e
	}
	who := principalOf(id, s.account)
	res := policy.Evaluate(s.policies.identity(id), nil, policy.Request{Principal: who, Action: MetricsAction, Resource: "*"})
	if !res.Allowed {
		return wire.ClientError(wire.TypeAccessDenied, msgAccessDenied(who.ARN, MetricsAction, "*", res.By))
	}
	return nil
}

// statusRecorder notes the status a wrapped handler answers.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish recovers a panicking operation (answering InternalFailure if nothing
// was written yet) and logs the request.
func (s *Server) finish(rc *reqCtx) {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		s.cfg.Logger.Error("panic in request handler", "op", rc.op, "request_id", rc.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if !rc.wrote {
			s.writeError(rc, internalFailure(fmt.Errorf("%v", p)))
		}
	}
	s.metrics.inFlight.Dec()
	if !rc.ours {
		s.metrics.request(rc.op, rc.errType, time.Since(rc.start))
	}
	s.logRequest(rc)
}

func (s *Server) logRequest(rc *reqCtx) {
	log := s.cfg.Logger
	switch {
	case rc.status >= 500:
		log.Error("request failed", "op", rc.op, "status", rc.status, "request_id", rc.id, "error", rc.errMsg, "duration", time.Since(rc.start))
	case log.IsDebug():
		log.Debug("request", "op", rc.op, "status", rc.status, "request_id", rc.id, "error", rc.errMsg, "duration", time.Since(rc.start))
	}
}

// admit authorizes the request (authz.go), then consults the Admission
// hook, if any. req.ResourceARN defaults to the stream's ARN, or "*" for
// an account-level operation.
func (s *Server) admit(rc *reqCtx, req AdmissionRequest) error {
	if req.ResourceARN == "" {
		req.ResourceARN = "*"
		if req.Stream != "" {
			req.ResourceARN = s.arnFor(rc, req.Stream)
			req.target = streamTarget(req.Stream)
		}
	}
	if err := s.authorize(rc, req); err != nil {
		return err
	}
	req.target = nil // authorization's alone
	if s.cfg.Admission == nil {
		return nil
	}
	req.Operation, req.Region = rc.op, rc.region
	return s.cfg.Admission.Admit(rc.ctx, req)
}

func (s *Server) now() time.Time { return s.cfg.Now() }
