package api

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPreDispatchChecks(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
		typ    string
		msg    string
	}{
		{"unknown operation", func() *http.Request { return newRequest("Frobnicate", `{}`) }, 400, wire.TypeUnknownOperation, ""},
		{"unimplemented operation", func() *http.Request { return newRequest("StartStreamEncryption", `{}`) }, 400, wire.TypeUnknownOperation, ""},
		{"no target", func() *http.Request { return newRequest("", `{}`) }, 400, wire.TypeUnknownOperation, ""},
		{"wrong service", func() *http.Request {
			r := newRequest("", `{}`)
			r.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
			return r
		}, 400, wire.TypeUnknownOperation, ""},
		{"unknown op before auth", func() *http.Request {
			r := newRequest("Nope", `{}`)
			r.Header.Del("Authorization")
			return r
		}, 400, wire.TypeUnknownOperation, ""},
		{"missing auth", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Del("Authorization")
			return r
		}, 400, wire.TypeMissingAuth, "Missing Authentication Token"},
		{"incomplete auth", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=a/b/c/kinesis/aws4_request")
			r.Header.Del("X-Amz-Date")
			return r
		}, 400, wire.TypeIncompleteSignature, "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. " +
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 Credential=a/b/c/kinesis/aws4_request"},
		{"garbage auth", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Set("Authorization", ", ,")
			return r
		}, 400, wire.TypeIncompleteSignature, ""},
		{"short credential", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20240101, SignedHeaders=host, Signature=x")
			return r
		}, 400, wire.TypeIncompleteSignature, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKID/20240101'"},
		{"wrong service scope", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x")
			return r
		}, 400, wire.TypeInvalidSignature, "Credential should be scoped to correct service: 'kinesis'. "},
		{"both auths", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
			return r
		}, 400, wire.TypeInvalidSignature, "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."},
		{"incomplete presigned", func() *http.Request {
			r := newRequest("ListStreams", `{}`)
			r.Header.Del("Authorization")
			r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=x&X-Amz-SignedHeaders=host"
			return r
		}, 400, wire.TypeIncompleteSignature, "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. Re-examine the query-string parameters."},
		{"body before auth", func() *http.Request {
			r := newRequest("ListStreams", `not json`)
			r.Header.Del("Authorization")
			return r
		}, 400, wire.TypeSerialization, ""},
		{"malformed object before auth", func() *http.Request {
			r := newRequest("ListStreams", `{"Limit":`)
			r.Header.Del("Authorization")
			return r
		}, 400, wire.TypeSerialization, ""},
		{"body before target", func() *http.Request { return newRequest("Nope", `{"a":1`) }, 400, wire.TypeSerialization, ""},
		{"empty body, unknown target", func() *http.Request { return newRequest("Nope", ``) }, 400, wire.TypeUnknownOperation, ""},
		{"empty body", func() *http.Request { return newRequest("ListStreams", ``) }, 400, wire.TypeSerialization, ""},
		{"body too large", func() *http.Request {
			return newRequest("PutRecords", `{"Records":[{"Data":"`+strings.Repeat("A", DefaultMaxBodyBytes)+`"}]}`)
		}, 413, wire.TypeTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.req())
			wantError(t, r, tc.status, tc.typ, tc.msg)
			if !uuidRE.MatchString(r.hdr("x-amzn-RequestId")) {
				t.Errorf("x-amzn-RequestId = %q", r.hdr("x-amzn-RequestId"))
			}
			if len(r.hdr("x-amz-id-2")) != 96 {
				t.Errorf("x-amz-id-2 = %q", r.hdr("x-amz-id-2"))
			}
		})
	}
}

func TestPresignedRequestAccepted(t *testing.T) {
	h := newHarness(t)
	r := newRequest("ListStreams", `{}`)
	r.Header.Del("Authorization")
	r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240101%2Fap-south-1%2Fkinesis%2Faws4_request&X-Amz-Date=x&X-Amz-SignedHeaders=host&X-Amz-Signature=y"
	if res := h.do(r); res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.raw)
	}
}

func TestRegionFromCredentialScope(t *testing.T) {
	h := newHarness(t)
	h.createStream("s1", 1)
	r := h.ok("DescribeStreamSummary", `{"StreamName":"s1"}`)
	arn := str(r.body["StreamDescriptionSummary"].(map[string]any)["StreamARN"])
	if arn != "arn:aws:kinesis:eu-west-1:123456789012:stream/s1" {
		t.Fatalf("StreamARN = %q", arn)
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t)
	r := h.do(httptest.NewRequest(http.MethodGet, "/health", nil))
	if r.status != 200 || r.raw != "ok\n" {
		t.Fatalf("health: %d %q", r.status, r.raw)
	}
}

func TestCORS(t *testing.T) {
	h := newHarness(t)
	req := httptest.NewRequest(http.MethodOptions, "/", nil)
	req.Header.Set("Origin", "http://example.com")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-amz-target")
	req.Header.Set("Access-Control-Request-Method", "POST")
	r := h.do(req)
	want := map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Headers": "content-type,x-amz-target",
		"Access-Control-Allow-Methods": "POST",
		"Access-Control-Max-Age":       "172800",
	}
	if r.status != 200 || r.raw != "" {
		t.Fatalf("preflight: %d %q", r.status, r.raw)
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if r.hdr("x-amz-id-2") != "" || r.hdr("x-amzn-RequestId") == "" {
		t.Errorf("preflight ids: %v", r.header)
	}
	post := newRequest("ListStreams", `{}`)
	post.Header.Set("Origin", "http://example.com")
	r = h.do(post)
	if r.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "x-amzn-RequestId") {
		t.Errorf("CORS POST headers: %v", r.header)
	}
	// CORS comes before the method check: a GET with Origin is refused with the headers.
	get := httptest.NewRequest(http.MethodGet, "/", nil)
	get.Header.Set("Origin", "http://example.com")
	if r = h.do(get); r.status != 403 || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("CORS GET: %d %v", r.status, r.header)
	}
}

// TestPreDispatchAnswers pins AWS's answers that are not error bodies of
// the request's protocol, byte for byte (aws-fidelity A4).
func TestPreDispatchAnswers(t *testing.T) {
	const (
		xmlDenied   = "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"
		xmlUnknown  = "<UnknownOperationException/>\n"
		envSer      = `{"Output":{"__type":"com.amazon.coral.service#SerializationException"},"Version":"1.0"}`
		envUnknown  = `{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}`
		cborUnknown = "\xbf\x66__type\x78\x19UnknownOperationException\xff"
		cborSer     = "\xbf\x66__type\x76SerializationException\xff"
	)
	h := newHarness(t)
	tests := []struct {
		name, method, ct, op, body string
		status                     int
		wantCT, wantBody           string // wantCT "": no Content-Type header
	}{
		{"GET", http.MethodGet, wire.ContentTypeJSON11, "ListStreams", "", 403, "", xmlDenied},
		{"PUT", http.MethodPut, wire.ContentTypeJSON11, "ListStreams", "{}", 403, "", xmlDenied},
		{"DELETE", http.MethodDelete, "", "", "", 403, "", xmlDenied},
		{"no Content-Type, no target", http.MethodPost, "", "", "{}", 403, "", xmlDenied},
		{"unknown type, target without operation", http.MethodPost, "text/plain", ".", "{}", 403, "", xmlDenied},
		{"no Content-Type", http.MethodPost, "", "ListStreams", "{}", 404, "", xmlUnknown},
		{"JSON 1.0", http.MethodPost, "application/x-amz-json-1.0", "Nope", "{}", 404, "", xmlUnknown},
		{"application/json", http.MethodPost, wire.ContentTypeJSON, "ListStreams", "{}", 404, wire.ContentTypeJSON, envUnknown},
		{"application/json, no target", http.MethodPost, "application/json; charset=utf-8", "", "{}", 404, wire.ContentTypeJSON, envUnknown},
		{"application/json, not an object", http.MethodPost, wire.ContentTypeJSON, "ListStreams", "[]", 400, wire.ContentTypeJSON, envSer},
		{"application/json, malformed", http.MethodPost, wire.ContentTypeJSON, "Nope", `{"a"`, 400, wire.ContentTypeJSON, envSer},
		{"empty, JSON 1.1", http.MethodPost, wire.ContentTypeJSON11, "ListStreams", "", 400, wire.ContentTypeJSON11, `{"__type":"SerializationException"}`},
		{"empty, JSON 1.1, unknown target", http.MethodPost, " application/x-amz-json-1.1 ;x", "", "", 400, wire.ContentTypeJSON11, `{"__type":"UnknownOperationException"}`},
		{"empty, no Content-Type", http.MethodPost, "", "", "", 400, wire.ContentTypeCBOR11, cborUnknown},
		{"empty, application/json", http.MethodPost, wire.ContentTypeJSON, "ListStreams", "", 400, wire.ContentTypeCBOR11, cborSer},
		{"empty, CBOR", http.MethodPost, wire.ContentTypeCBOR11, "ListStreams", "", 400, wire.ContentTypeCBOR11, cborSer},
		{"CBOR, not a map", http.MethodPost, wire.ContentTypeCBOR11, "ListStreams", "\x81\x01", 400, wire.ContentTypeCBOR11, cborSer},
		{"CBOR, malformed map, unknown target", http.MethodPost, wire.ContentTypeCBOR11, "Nope", "\xa1\x61", 400, wire.ContentTypeCBOR11, cborSer},
		{"CBOR, unknown target", http.MethodPost, wire.ContentTypeCBOR11, "Nope", "\xa0", 400, wire.ContentTypeCBOR11, cborUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(tc.op, tc.body)
			req.Method = tc.method
			req.Header.Del("Content-Type")
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.op == "." {
				req.Header.Set("X-Amz-Target", "Kinesis_20131202.")
			}
			r := h.do(req)
			if r.status != tc.status || r.raw != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", r.status, r.raw, tc.status, tc.wantBody)
			}
			if got := r.header.Values("Content-Type"); (tc.wantCT == "" && len(got) != 0) || (tc.wantCT != "" && (len(got) != 1 || got[0] != tc.wantCT)) {
				t.Fatalf("Content-Type %q, want %q", got, tc.wantCT)
			}
			if !uuidRE.MatchString(r.hdr("x-amzn-RequestId")) || r.hdr("x-amz-id-2") == "" {
				t.Fatalf("request ids: %v", r.header)
			}
		})
	}
}

// TestContentTypes: the two AWS protocols are served whatever the
// parameters and case of their Content-Type; other types never reach an
// operation.
func TestContentTypes(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		ct, wantCT string
		status     int
	}{
		{wire.ContentTypeJSON11, wire.ContentTypeJSON11, 200},
		{"application/x-amz-json-1.1; charset=utf-8", wire.ContentTypeJSON11, 200},
		{"Application/X-Amz-JSON-1.1", wire.ContentTypeJSON11, 200},
		{wire.ContentTypeJSON, wire.ContentTypeJSON, 404},
		{"", "", 404},
	} {
		req := newRequest("ListStreams", `{}`)
		req.Header.Set("Content-Type", tc.ct)
		r := h.do(req)
		if r.status != tc.status || r.header.Get("Content-Type") != tc.wantCT {
			t.Errorf("Content-Type %q: %d %q", tc.ct, r.status, r.header.Get("Content-Type"))
		}
	}
}

func TestSerializationErrors(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	tests := []struct {
		op, body, msg string
	}{
		{"ListStreams", `not json`, ""},
		{"ListStreams", `[]`, ""},
		{"ListStreams", `null`, ""},
		{"ListStreams", `{"Limit":5`, ""},
		{"ListStreams", `{} {}`, ""},
		{"ListStreams", `{"Limit":"5"}`, "class java.lang.String can not be converted to an Integer"},
		{"ListStreams", `{"Limit":true}`, "class java.lang.Boolean can not be converted to an Integer"},
		{"ListStreams", `{"Limit":{}}`, msgStartOfStruct},
		{"ListStreams", `{"Limit":[]}`, msgStartOfList},
		{"DescribeStream", `{"StreamName":5}`, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{"DescribeStream", `{"StreamName":true}`, "class java.lang.Boolean can not be converted to an String"},
		{"DescribeStream", `{"StreamName":{"a":1}}`, msgStartOfStruct},
		{"DescribeStream", `{"StreamName":["a"]}`, msgStartOfList},
		{"PutRecords", `{"StreamName":"s","Records":"x"}`, "Expected list or null"},
		{"PutRecords", `{"StreamName":"s","Records":{}}`, msgStartOfStruct},
		{"PutRecords", `{"StreamName":"s","Records":[5]}`, "Expected null"},
		{"AddTagsToStream", `{"StreamName":"s","Tags":[]}`, msgStartOfList},
		{"AddTagsToStream", `{"StreamName":"s","Tags":"a"}`, "Expected map or null"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"abc"}`, "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"ab$="}`, "'ab$=' can not be converted to a Blob: Invalid Base64 character: '$'"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"a=bc"}`, "'a=bc' can not be converted to a Blob: Invalid Base64 character: '='"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":"YR=="}`, "'YR==' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":true}`, "class java.lang.Boolean can not be converted to a Blob"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":12}`, msgNumberToBlob},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":-2147483648}`, msgNumberToBlob},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":34.56}`, msgNumberToBlob},
		{"PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"k","Data":2147483648}]}`, msgNumberToBlob},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":[1,2]}`, msgStartOfList},
		{"DeleteStream", `{"StreamName":"s","EnforceConsumerDeletion":"maybe"}`, "'MAYBE' can not be converted to an Boolean"},
		{"DeleteStream", `{"StreamName":"s","EnforceConsumerDeletion":1}`, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an Boolean"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":"yesterday"}`, "class java.lang.String can not be converted to milliseconds since epoch"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":"23"}`, "class java.lang.String can not be converted to milliseconds since epoch"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":true}`, "class java.lang.Boolean can not be converted to milliseconds since epoch"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":[]}`, msgStartOfList},
		{"ListShards", `{"StreamName":"s","StreamCreationTimestamp":{}}`, msgStartOfStruct},
		{"ListShards", `{"StreamName":"s","ShardFilter":{"Type":"AT_TIMESTAMP","Timestamp":"2020-01-01T00:00:00Z"}}`, "class java.lang.String can not be converted to milliseconds since epoch"},
	}
	for _, tc := range tests {
		t.Run(tc.op+" "+tc.body, func(t *testing.T) {
			r := h.call(tc.op, tc.body)
			wantError(t, r, 400, wire.TypeSerialization, tc.msg)
			if tc.msg == "" && r.raw != `{"__type":"SerializationException"}` {
				t.Fatalf("want the bare body, got %s", r.raw)
			}
		})
	}
}

func TestLenientScalars(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	// Fractions truncate and big integers clamp, as AWS's Integer parsing does.
	r := h.ok("DescribeStream", `{"StreamName":"s","Limit":1.9}`)
	if n := len(r.body["StreamDescription"].(map[string]any)["Shards"].([]any)); n != 1 {
		t.Fatalf("shards = %d", n)
	}
	wantError(t, h.call("ListStreams", `{"Limit":99999999999}`), 400, wire.TypeValidation,
		"1 validation error detected: Value '2147483647' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000")
	h.ok("DeleteStream", `{"StreamName":"s","EnforceConsumerDeletion":"true"}`)
	// Unknown members are ignored; escaped base64 is still base64.
	h.createStream("t", 1)
	h.ok("PutRecord", `{"StreamName":"t","PartitionKey":"k","Data":"YWJj\/w==","Bogus":{"x":[1]}}`)
	if got := string(h.fake.lastPut[0].Data); got != "abc\xff" {
		t.Fatalf("data = %q", got)
	}
}

// AWS's texts for a value of the wrong JSON kind, spelled out here so that a
// change to the encoder's wording fails the tests.
const (
	msgStartOfStruct = "Start of structure or map found where not expected."
	msgStartOfList   = "Start of list found where not expected"
	msgNumberToBlob  = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"
)
