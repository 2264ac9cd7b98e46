// Package api is shardlog's Kinesis Data Streams HTTP API: the JSON 1.1 wire
// protocol, AWS's pre-dispatch checks and error formats, request validation,
// and the data- and control-plane operations, all on top of a Backend.
package api

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Server is an http.Handler speaking the Kinesis API (Kinesis_20131202).
type Server struct {
	cfg  Config
	b    Backend
	keys tokenKeys
}

// New returns a Server over b. b.IteratorKey() is read once: it keys the shard
// iterators and pagination tokens.
func New(cfg Config, b Backend) *Server {
	return &Server{cfg: cfg.withDefaults(b), b: b, keys: deriveTokenKeys(b.IteratorKey())}
}

const targetPrefix = "Kinesis_20131202."

type opFunc func(s *Server, rc *reqCtx, body []byte) (any, error)

// operations are the Kinesis operations shardlog implements. Any other target,
// including Kinesis operations not implemented yet (consumers,
// SubscribeToShard, encryption, policies), is answered UnknownOperationException.
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
	"GetShardIterator":              (*Server).getShardIterator,
	"GetRecords":                    (*Server).getRecords,
	"AddTagsToStream":               (*Server).addTags,
	"RemoveTagsFromStream":          (*Server).removeTags,
	"ListTagsForStream":             (*Server).listTags,
	"SplitShard":                    (*Server).splitShard,
	"MergeShards":                   (*Server).mergeShards,
	"UpdateShardCount":              (*Server).updateShardCount,
}

// reqCtx is the state of one request.
type reqCtx struct {
	ctx    context.Context
	w      http.ResponseWriter
	r      *http.Request
	id     string
	op     string
	region string
	codec  codec
	start  time.Time
	status int
	errMsg string
	wrote  bool
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := &reqCtx{ctx: r.Context(), w: w, r: r, id: newRequestID(), codec: jsonAmz, start: time.Now(), region: s.cfg.Region}
	defer s.finish(rc)
	s.serve(rc)
}

// serve runs AWS's checks in AWS's order, then the operation.
func (s *Server) serve(rc *reqCtx) {
	r := rc.r
	setRequestIDs(rc)
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		s.health(rc)
		return
	}
	if s.handleCORS(rc) {
		return
	}
	if r.Method != http.MethodPost {
		s.writeError(rc, &apiError{Type: typeAccessDenied, Message: "Unable to determine service/operation name to be authorized", Status: http.StatusForbidden})
		return
	}
	rc.codec = codecFor(r.Header.Get("Content-Type"))
	op, ok := lookupOperation(r.Header.Get("X-Amz-Target"))
	if !ok {
		s.writeError(rc, clientError(typeUnknownOperation, ""))
		return
	}
	rc.op = strings.TrimPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if aerr := checkAuth(rc); aerr != nil {
		s.writeError(rc, aerr)
		return
	}
	body, release, aerr := s.readBody(rc)
	if aerr != nil {
		s.writeError(rc, aerr)
		return
	}
	defer release()
	out, err := op(s, rc, body)
	if err != nil {
		s.writeError(rc, toAPIError(err))
		return
	}
	s.writeOutput(rc, out)
}

func lookupOperation(target string) (opFunc, bool) {
	name, ok := strings.CutPrefix(target, targetPrefix)
	if !ok {
		return nil, false
	}
	op, ok := operations[name]
	return op, ok
}

// health answers GET /health while the server is serving.
func (s *Server) health(rc *reqCtx) {
	rc.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc.status = http.StatusOK
	rc.wrote = true
	rc.w.WriteHeader(http.StatusOK)
	_, _ = rc.w.Write([]byte("ok\n"))
}

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

// admit consults the Admission hook, if any.
func (s *Server) admit(rc *reqCtx, req AdmissionRequest) error {
	if s.cfg.Admission == nil {
		return nil
	}
	req.Operation, req.Region = rc.op, rc.region
	return s.cfg.Admission.Admit(rc.ctx, req)
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// bodyPool recycles request-body buffers. Decoded requests never alias the
// body (strings are copied and blobs decoded into fresh slices), so a buffer
// is reusable as soon as the operation returns.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}
