package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/shardlog/shardlog/seqnum"
	"github.com/shardlog/shardlog/storage"
)

// The conformance suite: one file per behaviour in testdata/conformance,
// each an exact request and AWS's exact answer (../shared/reference/
// aws-fidelity.md is where the answers come from). Every file runs against a
// fresh in-process server on 127.0.0.1, over each protocol it names.
//
// A case file is JSON:
//
//	{
//	  "id": "A4", "name": "what it checks",
//	  "protocols": ["json", "cbor"],     // or ["raw"] (default): bodies sent as written
//	  "server": {"update_delay": "1h", "delete_delay": "1h", "create_delay": "1h", "consumer_delay": "1h"},
//	  "steps": [{"request": {...}, "response": {...}}, ...]
//	}
//
// A request has "op" (sets X-Amz-Target: Kinesis_20131202.<op>), or "target"
// and "headers" to set them by hand ("Content-Type": null removes the
// protocol's). "method" defaults to POST. The body is "body" (raw text),
// "body_hex", or "body_json" (a JSON value: sent as JSON, or as CBOR under the
// cbor protocol, where a string "$bytes:<base64>" becomes a byte string and
// {"$time": ms} a tag-1 timestamp). "unsigned": true leaves out the SigV4
// Authorization header.
//
// A response has "status" (default 200); "content_type" (absent: the
// protocol's; null: no Content-Type header at all); and at most one of
// "body" (exact bytes), "body_hex", "body_regex" (a full match), or
// "body_json" (decoded from JSON or CBOR and compared as values; a string
// "$any" matches anything, "$save:<NAME>" anything and keeps it for later
// requests, whose strings "{{NAME}}" it replaces, and "$re:<regexp>" a string it fully matches; an
// object with "$partial": true ignores members it does not name; a string
// "$seq:<field>=<term>,..." matches a sequence number whose decoded fields
// (create, index, ordinal, time: seqnum.Seq's ShardCreateSecs, ShardIndex,
// Ordinal, ArrivalSecs) equal the terms, each a number (0x for hex) or a
// variable with an optional offset ("C", "C+1"), bound on first use and shared
// by every step of the case, so "time=C" and "create=C+1" relate two numbers
// whatever the clock said; a term may also be "<field><<term>" or
// "<field>><term>" with a bound variable, and NOW is the second (Unix time)
// at which the step's response arrived). In every
// expected string "{account}" and "{region}" stand for 000000000000 and
// us-east-1. A step whose response is absent must answer 200.

type confCase struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Protocols []string   `json:"protocols"`
	Server    confServer `json:"server"`
	Steps     []confStep `json:"steps"`
}

type confServer struct {
	CreateDelay string `json:"create_delay"`
	DeleteDelay string `json:"delete_delay"`
	UpdateDelay string `json:"update_delay"`
	// ConsumerDelay is how long consumers stay CREATING and DELETING.
	ConsumerDelay string `json:"consumer_delay"`
}

type confStep struct {
	Request  confRequest   `json:"request"`
	Response *confResponse `json:"response"`
	// SleepMs waits before the request (for delays that must run out).
	SleepMs int `json:"sleep_ms"`
}

type confRequest struct {
	Op       string             `json:"op"`
	Target   *string            `json:"target"`
	Method   string             `json:"method"`
	Path     string             `json:"path"`
	Headers  map[string]*string `json:"headers"`
	Body     *string            `json:"body"`
	BodyHex  string             `json:"body_hex"`
	BodyJSON json.RawMessage    `json:"body_json"`
	Unsigned bool               `json:"unsigned"`
}

type confResponse struct {
	Status      int             `json:"status"`
	ContentType json.RawMessage `json:"content_type"`
	Body        *string         `json:"body"`
	BodyHex     string          `json:"body_hex"`
	BodyRegex   string          `json:"body_regex"`
	BodyJSON    json.RawMessage `json:"body_json"`
}

const (
	confAccount = "000000000000"
	confRegion  = "us-east-1"
	confAuth    = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123"
)

var protocolTypes = map[string]string{"json": "application/x-amz-json-1.1", "cbor": "application/x-amz-cbor-1.1"}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob("testdata/conformance/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance cases: %v", err)
	}
	for _, f := range files {
		c := readCase(t, f)
		protocols := c.Protocols
		if len(protocols) == 0 {
			protocols = []string{"raw"}
		}
		for _, p := range protocols {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".json")+"/"+p, func(t *testing.T) {
				runCase(t, c, p)
			})
		}
	}
}

func readCase(t *testing.T, file string) confCase {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c confCase
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if c.ID == "" || c.Name == "" || len(c.Steps) == 0 {
		t.Fatalf("%s: a case needs an id, a name and steps", file)
	}
	return c
}

func runCase(t *testing.T, c confCase, protocol string) {
	opts := storage.Options{CreateDelay: duration(t, c.Server.CreateDelay), DeleteDelay: duration(t, c.Server.DeleteDelay),
		UpdateDelay: duration(t, c.Server.UpdateDelay), ConsumerDelay: duration(t, c.Server.ConsumerDelay)}
	srv := startServerWith(t, t.TempDir(), opts)
	env := &confEnv{ints: map[string]int64{}, saved: map[string]string{}}
	for i, st := range c.Steps {
		if st.SleepMs > 0 {
			time.Sleep(time.Duration(st.SleepMs) * time.Millisecond)
		}
		req := buildRequest(t, srv.endpoint, st.Request, protocol, env.saved)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want := st.Response
		if want == nil {
			want = &confResponse{}
		}
		env.ints["NOW"] = time.Now().Unix()
		if msg := checkResponse(resp, body, *want, protocol, env); msg != "" {
			t.Errorf("%s %s, step %d (%s %s): %s\nbody: %q", c.ID, c.Name, i, req.Method, req.Header.Get("X-Amz-Target"), msg, body)
		}
	}
}

func duration(t *testing.T, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func buildRequest(t *testing.T, endpoint string, r confRequest, protocol string, saved map[string]string) *http.Request {
	method := r.Method
	if method == "" {
		method = http.MethodPost
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	body := requestBody(t, r, protocol, saved)
	req, err := http.NewRequest(method, endpoint+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct, ok := protocolTypes[protocol]; ok {
		req.Header.Set("Content-Type", ct)
	}
	if r.Op != "" {
		req.Header.Set("X-Amz-Target", "Kinesis_20131202."+r.Op)
	}
	if r.Target != nil {
		req.Header.Set("X-Amz-Target", *r.Target)
	}
	if !r.Unsigned {
		req.Header.Set("Authorization", confAuth)
		req.Header.Set("X-Amz-Date", "20260101T000000Z")
	}
	for k, v := range r.Headers {
		if v == nil {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, *v)
		}
	}
	return req
}

func requestBody(t *testing.T, r confRequest, protocol string, saved map[string]string) []byte {
	switch {
	case r.Body != nil:
		return []byte(*r.Body)
	case r.BodyHex != "":
		b, err := hex.DecodeString(strings.ReplaceAll(r.BodyHex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	case r.BodyJSON == nil:
		return nil
	}
	text := string(r.BodyJSON)
	for name, v := range saved {
		text = strings.ReplaceAll(text, "{{"+name+"}}", v)
	}
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatal(err)
	}
	if protocol == "cbor" {
		b, err := cbor.Marshal(toCBOR(v))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, _ := json.Marshal(fromMarkers(v))
	return b
}

// toCBOR turns the JSON markers into CBOR's byte strings and timestamps, and
// whole numbers into integers.
func toCBOR(v any) any {
	switch x := v.(type) {
	case string:
		if b64, ok := strings.CutPrefix(x, "$bytes:"); ok {
			b, _ := base64.StdEncoding.DecodeString(b64)
			return b
		}
		return x
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = toCBOR(x[i])
		}
		return out
	case map[string]any:
		if ms, ok := x["$time"].(float64); ok && len(x) == 1 {
			return cbor.Tag{Number: 1, Content: int64(ms)}
		}
		out := map[string]any{}
		for k, e := range x {
			out[k] = toCBOR(e)
		}
		return out
	}
	return v
}

// fromMarkers is toCBOR for JSON: bytes stay base64 text, and a timestamp is
// epoch seconds.
func fromMarkers(v any) any {
	switch x := v.(type) {
	case string:
		if b64, ok := strings.CutPrefix(x, "$bytes:"); ok {
			return b64
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = fromMarkers(x[i])
		}
		return out
	case map[string]any:
		if ms, ok := x["$time"].(float64); ok && len(x) == 1 {
			return ms / 1000
		}
		out := map[string]any{}
		for k, e := range x {
			out[k] = fromMarkers(e)
		}
		return out
	}
	return v
}

func checkResponse(resp *http.Response, body []byte, want confResponse, protocol string, env *confEnv) string {
	status := want.Status
	if status == 0 {
		status = http.StatusOK
	}
	if resp.StatusCode != status {
		return fmt.Sprintf("status %d, want %d", resp.StatusCode, status)
	}
	if msg := checkContentType(resp, want, protocol); msg != "" {
		return msg
	}
	switch {
	case want.Body != nil:
		if string(body) != expand(*want.Body) {
			return fmt.Sprintf("body %q, want %q", body, expand(*want.Body))
		}
	case want.BodyHex != "":
		if got := hex.EncodeToString(body); got != strings.ReplaceAll(want.BodyHex, " ", "") {
			return fmt.Sprintf("body %s, want %s", got, want.BodyHex)
		}
	case want.BodyRegex != "":
		if !regexp.MustCompile(`^(?s:` + expand(want.BodyRegex) + `)$`).Match(body) {
			return fmt.Sprintf("body does not match %s", want.BodyRegex)
		}
	case want.BodyJSON != nil:
		return checkBodyJSON(body, want.BodyJSON, resp.Header.Get("Content-Type"), env)
	}
	return ""
}

func checkContentType(resp *http.Response, want confResponse, protocol string) string {
	got, present := resp.Header["Content-Type"]
	switch {
	case string(want.ContentType) == "null":
		if present {
			return fmt.Sprintf("Content-Type %q, want none", got)
		}
		return ""
	case want.ContentType == nil:
		ct, ok := protocolTypes[protocol]
		if !ok {
			return ""
		}
		if resp.Header.Get("Content-Type") != ct {
			return fmt.Sprintf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), ct)
		}
		return ""
	}
	var ct string
	if err := json.Unmarshal(want.ContentType, &ct); err != nil {
		return "bad content_type in the case: " + err.Error()
	}
	if resp.Header.Get("Content-Type") != ct {
		return fmt.Sprintf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), ct)
	}
	return ""
}

func checkBodyJSON(body []byte, wantRaw json.RawMessage, contentType string, env *confEnv) string {
	var want any
	if err := json.Unmarshal(wantRaw, &want); err != nil {
		return "bad body_json in the case: " + err.Error()
	}
	var got any
	if contentType == protocolTypes["cbor"] {
		var v any
		if err := cbor.Unmarshal(body, &v); err != nil {
			return "CBOR body does not decode: " + err.Error()
		}
		got = fromCBOR(v)
	} else if err := json.Unmarshal(body, &got); err != nil {
		return "JSON body does not decode: " + err.Error()
	}
	if path, ok := matchValue(got, want, "$", env); !ok {
		return "body differs at " + path
	}
	return ""
}

// fromCBOR maps a decoded CBOR value onto JSON's: byte strings become base64
// text, timestamps epoch seconds, integers float64.
func fromCBOR(v any) any {
	switch x := v.(type) {
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	case cbor.Tag:
		if ms, ok := x.Content.(uint64); ok && x.Number == 1 {
			return float64(ms) / 1000
		}
		return fromCBOR(x.Content)
	case time.Time:
		return float64(x.UnixMilli()) / 1000
	case []any:
		for i := range x {
			x[i] = fromCBOR(x[i])
		}
		return x
	case map[any]any:
		out := map[string]any{}
		for k, e := range x {
			out[fmt.Sprint(k)] = fromCBOR(e)
		}
		return out
	}
	return v
}

// confEnv is what the steps of one case share: sequence-number variables and
// saved values.
type confEnv struct {
	ints  map[string]int64
	saved map[string]string
}

func matchValue(got, want any, path string, env *confEnv) (string, bool) {
	switch w := want.(type) {
	case string:
		w = expand(w)
		if w == "$any" {
			return "", true
		}
		if name, ok := strings.CutPrefix(w, "$save:"); ok {
			s, isStr := got.(string)
			env.saved[name] = s
			return path, isStr
		}
		if re, ok := strings.CutPrefix(w, "$re:"); ok {
			s, isStr := got.(string)
			return path, isStr && regexp.MustCompile(`^(?s:`+re+`)$`).MatchString(s)
		}
		if pat, ok := strings.CutPrefix(w, "$seq:"); ok {
			return path, matchSeq(got, pat, env.ints)
		}
		return path, got == w
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		partial := w["$partial"] == true
		if !partial && len(g) != len(w) {
			return path + fmt.Sprintf(" (members %v, want %v)", keys(g), keys(w)), false
		}
		for k, wv := range w {
			if k == "$partial" {
				continue
			}
			gv, present := g[k]
			if !present {
				return path + "." + k + " (missing)", false
			}
			if p, ok := matchValue(gv, wv, path+"."+k, env); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path + " (length)", false
		}
		for i := range w {
			if p, ok := matchValue(g[i], w[i], fmt.Sprintf("%s[%d]", path, i), env); !ok {
				return p, false
			}
		}
		return "", true
	}
	return path, reflect.DeepEqual(got, want)
}

// matchSeq matches a sequence number against "$seq:" terms (see the top of
// this file), binding unbound variables.
func matchSeq(got any, pat string, vars map[string]int64) bool {
	s, ok := got.(string)
	if !ok {
		return false
	}
	p, err := seqnum.Parse(s)
	if err != nil {
		return false
	}
	fields := map[string]int64{"create": p.ShardCreateSecs, "index": int64(p.ShardIndex), "ordinal": int64(p.Ordinal), "time": p.ArrivalSecs}
	for _, term := range strings.Split(pat, ",") {
		i := strings.IndexAny(term, "=<>")
		if i < 0 {
			return false
		}
		v, known := fields[term[:i]]
		if !known || !matchTerm(v, term[i], term[i+1:], vars) {
			return false
		}
	}
	return true
}

// matchTerm compares v (op '=', '<' or '>') with a number or "X", "X+n",
// "X-n"; '=' binds an unbound X to make the term true.
func matchTerm(v int64, op byte, expr string, vars map[string]int64) bool {
	cmp := func(w int64) bool {
		switch op {
		case '<':
			return v < w
		case '>':
			return v > w
		}
		return v == w
	}
	if n, err := strconv.ParseInt(expr, 0, 64); err == nil {
		return cmp(n)
	}
	name, off := expr, int64(0)
	if i := strings.IndexAny(expr, "+-"); i > 0 {
		n, err := strconv.ParseInt(expr[i:], 10, 64)
		if err != nil {
			return false
		}
		name, off = expr[:i], n
	}
	if bound, ok := vars[name]; ok {
		return cmp(bound + off)
	}
	if op != '=' {
		return false
	}
	vars[name] = v - off
	return true
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func expand(s string) string {
	return strings.NewReplacer("{account}", confAccount, "{region}", confRegion).Replace(s)
}
