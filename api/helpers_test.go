package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
)

const targetPrefix = "Kinesis_20131202."

const testAuth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abcdef"

// harness is a Server over a fake backend with a controllable clock.
type harness struct {
	t    testing.TB
	fake *fakeBackend
	srv  *Server
	mu   sync.Mutex
	now  time.Time
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, fake: newFake(), now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	h.fake.clock = h.clock
	h.srv = New(Config{Now: h.clock}, h.fake)
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r response) errType() string { s, _ := r.body["__type"].(string); return s }

// message is the error text under AWS's key for the type: "Message" for a
// SerializationException, "message" for every other.
func (r response) message() string { s, _ := r.body[messageKey(r.errType())].(string); return s }

func messageKey(typ string) string {
	if typ == wire.TypeSerialization {
		return "Message"
	}
	return "message"
}

// do sends a raw request through the handler.
func (h *harness) do(req *http.Request) response {
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	res := response{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if len(res.raw) > 0 && res.raw[0] == '{' {
		if err := json.Unmarshal([]byte(res.raw), &res.body); err != nil {
			h.t.Fatalf("response is not JSON: %v: %s", err, res.raw)
		}
	}
	return res
}

func newRequest(op, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentTypeJSON11)
	if op != "" {
		req.Header.Set("X-Amz-Target", targetPrefix+op)
	}
	req.Header.Set("Authorization", testAuth)
	req.Header.Set("X-Amz-Date", "20240101T000000Z")
	return req
}

// call sends an authenticated JSON 1.1 request for op.
func (h *harness) call(op, body string) response { return h.do(newRequest(op, body)) }

// ok calls op and fails the test unless it succeeded.
func (h *harness) ok(op, body string) response {
	h.t.Helper()
	r := h.call(op, body)
	if r.status != http.StatusOK {
		h.t.Fatalf("%s %s: status %d: %s", op, body, r.status, r.raw)
	}
	return r
}

// wantError checks an error answer's status, type and (if msg != "") message,
// and that the message is under AWS's key for the type.
func wantError(t testing.TB, r response, status int, typ, msg string) {
	t.Helper()
	if r.status != status || r.errType() != typ || (msg != "" && r.message() != msg) {
		t.Fatalf("got %d %s %q; want %d %s %q", r.status, r.errType(), r.message(), status, typ, msg)
	}
	for key := range r.body {
		if key != "__type" && key != messageKey(typ) {
			t.Fatalf("%s body has the key %q: %s", typ, key, r.raw)
		}
	}
}

func (h *harness) createStream(name string, shards int) {
	h.t.Helper()
	h.ok("CreateStream", `{"StreamName":"`+name+`","ShardCount":`+strconv.Itoa(shards)+`}`)
}

func str(v any) string { s, _ := v.(string); return s }

// hdr looks a header up case-insensitively (the server keeps AWS's spelling,
// which is not Go's canonical form).
func (r response) hdr(k string) string {
	for key, v := range r.header {
		if strings.EqualFold(key, k) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
