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
		{"unimplemented operation", func() *http.Request { return newRequest("RegisterStreamConsumer", `{}`) }, 400, wire.TypeUnknownOperation, ""},
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
		{"GET", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }, 403, wire.TypeAccessDenied, "Unable to determine service/operation name to be authorized"},
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
		{"auth before body", func() *http.Request {
			r := newRequest("ListStreams", `not json`)
			r.Header.Del("Authorization")
			return r
		}, 400, wire.TypeMissingAuth, ""},
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
}

func TestContentTypes(t *testing.T) {
	h := newHarness(t)
	for _, ct := range []string{wire.ContentTypeJSON11, wire.ContentTypeJSON, ""} {
		req := newRequest("ListStreams", `{}`)
		req.Header.Set("Content-Type", ct)
		r := h.do(req)
		want := ct
		if ct == "" {
			want = wire.ContentTypeJSON11
		}
		if r.status != 200 || r.header.Get("Content-Type") != want {
			t.Errorf("Content-Type %q: %d %q", ct, r.status, r.header.Get("Content-Type"))
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
		{"ListStreams", `[]`, "Request body must be a JSON object"},
		{"ListStreams", `null`, "Request body must be a JSON object"},
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
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":12}`, "class java.math.BigDecimal can not be converted to a Blob"},
		{"PutRecord", `{"StreamName":"s","PartitionKey":"k","Data":[1,2]}`, msgStartOfList},
		{"DeleteStream", `{"StreamName":"s","EnforceConsumerDeletion":"maybe"}`, "'MAYBE' can not be converted to an Boolean"},
		{"GetShardIterator", `{"StreamName":"s","ShardId":"0","ShardIteratorType":"AT_TIMESTAMP","Timestamp":"yesterday"}`, "'yesterday' can not be converted to a Timestamp"},
	}
	for _, tc := range tests {
		t.Run(tc.op+" "+tc.body, func(t *testing.T) {
			wantError(t, h.call(tc.op, tc.body), 400, wire.TypeSerialization, tc.msg)
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
)
