package wire

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Response headers, in AWS's spelling (assigned directly to keep the case).
const (
	hdrRequestID = "x-amzn-RequestId"
	hdrID2       = "x-amz-id-2"
)

// NewRequestID returns a random (version 4) UUID. Request ids need to be
// unique, not secret, so the fast non-cryptographic generator is enough.
func NewRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// SetRequestIDs sets x-amzn-RequestId on every response, and x-amz-id-2 (72
// random bytes in base64) except on CORS preflights, as AWS does.
func SetRequestIDs(h http.Header, r *http.Request, id string) {
	h[hdrRequestID] = []string{id}
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" {
		return
	}
	var id2 [72]byte
	for i := 0; i < len(id2); i += 8 {
		binary.LittleEndian.PutUint64(id2[i:], rand.Uint64())
	}
	h[hdrID2] = []string{base64.StdEncoding.EncodeToString(id2[:])}
}

// CORS sets the headers AWS sends browsers: any request with Origin gets
// Access-Control-Allow-Origin: *; a preflight (OPTIONS) echoes the requested
// headers and method. It reports a preflight, which the caller answers with an
// empty 200 and nothing else.
func CORS(h http.Header, r *http.Request) (preflight bool) {
	if r.Header.Get("Origin") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method != http.MethodOptions {
		h.Set("Access-Control-Expose-Headers", "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date")
		return false
	}
	if v := r.Header.Get("Access-Control-Request-Headers"); v != "" {
		h.Set("Access-Control-Allow-Headers", v)
	}
	if v := r.Header.Get("Access-Control-Request-Method"); v != "" {
		h.Set("Access-Control-Allow-Methods", v)
	}
	h.Set("Access-Control-Max-Age", "172800")
	h.Set("Content-Length", "0")
	return true
}

// Reply is a whole answer in AWS's bytes: the pre-dispatch answers, some of
// which are not error bodies of the request's protocol (XML, Coral envelopes).
type Reply struct {
	Status int
	// ContentType "" means no Content-Type header at all, as AWS sends the
	// XML and 404 answers.
	ContentType string
	Body        []byte
	// Type and Message are for the log only.
	Type, Message string
}

// ErrorReply renders e in codec c.
func ErrorReply(c Codec, e *Error) *Reply {
	return &Reply{Status: e.Status, ContentType: c.ContentType(), Body: c.EncodeError(e), Type: e.Type, Message: e.Message}
}

// AWS's pre-dispatch answers that are not in the request's protocol.
const (
	xmlAccessDenied    = "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"
	xmlUnknownOp       = "<UnknownOperationException/>\n"
	coralSerialization = `{"Output":{"__type":"com.amazon.coral.service#SerializationException"},"Version":"1.0"}`
	coralUnknownOp     = `{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}`
)

// AccessDenied is AWS's answer to a method other than POST (step 2 below),
// and to a body of an unsupported Content-Type whose target lacks a part.
func AccessDenied() *Reply {
	return &Reply{Status: http.StatusForbidden, Body: []byte(xmlAccessDenied), Type: TypeAccessDenied}
}

// mediaType is the Content-Type as AWS's front end classifies it.
type mediaType int

const (
	mediaUnsupported mediaType = iota
	mediaJSON11
	mediaCBOR11
	mediaPlainJSON // application/json: answered with Coral envelopes only
)

// Front is what AWS's front end reads of a POST before it dispatches it: the
// Content-Type and X-Amz-Target. Its Check runs AWS's checks in AWS's order
// (aws-fidelity A4; the first match answers):
//
//  1. CORS and 2. the method (the caller, before reading the body);
//  3. an empty body: a bare SerializationException if the target is valid,
//     else UnknownOperationException, in JSON 1.1 for that Content-Type and
//     in CBOR for any other (none included);
//  4. an unsupported Content-Type: 403 XML AccessDenied if the target lacks
//     a part, else 404 <UnknownOperationException/>, no Content-Type;
//  5. a body that is not a JSON object (CBOR map): the Coral
//     SerializationException envelope for application/json, else a bare
//     SerializationException;
//  6. application/json: the Coral UnknownOperationException envelope (404),
//     whatever the target;
//  7. a target that is not valid: a bare UnknownOperationException;
//  8. authentication (CheckAuth).
//
// Captured from AWS responses (2018–2020, Kinesis and Firehose);
// unverified against the current service. SDKs always send a body and a
// Content-Type, so real clients do not reach steps 3–6.
type Front struct {
	media mediaType
	// Op is the operation named by a valid target (service Kinesis_20131202
	// and an operation the server implements), else "".
	Op string
	// bothParts: X-Amz-Target has non-empty text on each side of its first '.'.
	bothParts bool
	// Codec answers in the request's protocol: CBOR for CBOR, else JSON 1.1
	// (also for errors such as 413 met before Check decides).
	Codec Codec
}

// ReadFront reads h; isOp reports whether the server implements an operation.
// Unimplemented Kinesis operations are unknown, as everywhere in shardlog.
func ReadFront(h http.Header, isOp func(string) bool) Front {
	f := Front{media: classifyMedia(h.Get("Content-Type")), Codec: JSON11}
	if f.media == mediaCBOR11 {
		f.Codec = cborAmz
	}
	target := h.Get("X-Amz-Target")
	service, op, _ := strings.Cut(target, ".")
	f.bothParts = service != "" && op != ""
	if service == "Kinesis_20131202" && isOp(op) {
		f.Op = op
	}
	return f
}

// classifyMedia looks at the Content-Type up to its first ';', trimmed.
// AWS's case handling was not captured; media types are case-insensitive
// (RFC 9110), so case is folded.
func classifyMedia(contentType string) mediaType {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(ct)) {
	case ContentTypeJSON11:
		return mediaJSON11
	case ContentTypeCBOR11:
		return mediaCBOR11
	case ContentTypeJSON:
		return mediaPlainJSON
	}
	return mediaUnsupported
}

// Check runs steps 3 to 8 on body; authErr is CheckAuth's verdict. It returns
// nil when the operation is to run.
func (f *Front) Check(body []byte, authErr *Error) *Reply {
	switch {
	case len(body) == 0:
		return f.emptyBody()
	case f.media == mediaUnsupported:
		if !f.bothParts {
			return AccessDenied()
		}
		return &Reply{Status: http.StatusNotFound, Body: []byte(xmlUnknownOp), Type: TypeUnknownOperation}
	}
	// Step 5 checks the whole text only when a later step rejects the
	// request anyway. Otherwise the first byte is enough: the operation's
	// decoder answers any other syntax error with the same bare body, and
	// the hot path (PutRecords) is spared a second pass over the body.
	if !f.isObject(body, f.media == mediaPlainJSON || f.Op == "" || authErr != nil) {
		if f.media == mediaPlainJSON {
			return coralEnvelope(http.StatusBadRequest, coralSerialization, TypeSerialization)
		}
		return ErrorReply(f.Codec, SerializationError(""))
	}
	switch {
	case f.media == mediaPlainJSON:
		return coralEnvelope(http.StatusNotFound, coralUnknownOp, TypeUnknownOperation)
	case f.Op == "":
		return ErrorReply(f.Codec, ClientError(TypeUnknownOperation, ""))
	case authErr != nil:
		return ErrorReply(f.Codec, authErr)
	}
	return nil
}

// emptyBody is step 3: JSON 1.1 answers in JSON, every other Content-Type in CBOR.
func (f *Front) emptyBody() *Reply {
	c := cborAmz
	if f.media == mediaJSON11 {
		c = JSON11
	}
	if f.Op == "" {
		return ErrorReply(c, ClientError(TypeUnknownOperation, ""))
	}
	return ErrorReply(c, SerializationError(""))
}

// isObject reports whether body is a JSON object (a CBOR map for CBOR):
// fully checked when full, else by its first byte.
func (f *Front) isObject(body []byte, full bool) bool {
	if f.media == mediaCBOR11 {
		return isCBORMap(body) && (!full || cborDec.Wellformed(body) == nil)
	}
	return isJSONObject(body) && (!full || json.Valid(body))
}

func coralEnvelope(status int, body, typ string) *Reply {
	return &Reply{Status: status, ContentType: ContentTypeJSON, Body: []byte(body), Type: typ}
}

// CheckAuth requires SigV4 authentication to be present and well formed (it
// does not verify the signature) and returns the region of the credential
// scope. Messages are AWS's.
func CheckAuth(r *http.Request) (region string, e *Error) {
	header := r.Header.Get("Authorization")
	var query map[string][]string
	if r.URL.RawQuery != "" {
		query = r.URL.Query()
	}
	_, presigned := query["X-Amz-Algorithm"]
	switch {
	case header != "" && presigned:
		return "", ClientError(TypeInvalidSignature, "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.")
	case header == "" && !presigned:
		return "", ClientError(TypeMissingAuth, "Missing Authentication Token")
	case header != "":
		return checkAuthHeader(r, header)
	}
	return checkAuthQuery(query)
}

func checkAuthHeader(r *http.Request, header string) (string, *Error) {
	fields := strings.FieldsFunc(header, func(r rune) bool { return r == ',' || r == ' ' })
	if len(fields) == 0 {
		fields = []string{""}
	}
	params := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		params[k] = v
	}
	var msg strings.Builder
	for _, p := range []string{"Credential", "Signature", "SignedHeaders"} {
		if params[p] == "" {
			msg.WriteString("Authorization header requires '" + p + "' parameter. ")
		}
	}
	if r.Header.Get("X-Amz-Date") == "" && r.Header.Get("Date") == "" {
		msg.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
	}
	if msg.Len() > 0 {
		return "", ClientError(TypeIncompleteSignature, msg.String()+"Authorization="+header)
	}
	if fields[0] != "AWS4-HMAC-SHA256" {
		return "", ClientError(TypeIncompleteSignature, "Unsupported AWS 'algorithm': '"+fields[0]+"'. Authorization="+header)
	}
	return checkScope(params["Credential"])
}

func checkAuthQuery(query map[string][]string) (string, *Error) {
	var msg strings.Builder
	for _, p := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"} {
		if len(query[p]) == 0 || query[p][0] == "" {
			msg.WriteString("AWS query-string parameters must include '" + p + "'. ")
		}
	}
	if msg.Len() > 0 {
		return "", ClientError(TypeIncompleteSignature, msg.String()+"Re-examine the query-string parameters.")
	}
	return checkScope(query["X-Amz-Credential"][0])
}

// checkScope parses keyid/date/region/service/aws4_request and returns the
// region, for ARNs and messages.
func checkScope(credential string) (string, *Error) {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 {
		return "", ClientError(TypeIncompleteSignature, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '"+credential+"'")
	}
	if parts[4] != "aws4_request" {
		return "", ClientError(TypeIncompleteSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '"+parts[4]+"'.")
	}
	if parts[3] != "kinesis" {
		return "", ClientError(TypeInvalidSignature, "Credential should be scoped to correct service: 'kinesis'. ")
	}
	if parts[2] == "" {
		return "", ClientError(TypeInvalidSignature, "Credential should be scoped to a valid region. ")
	}
	return parts[2], nil
}

// bodyPool recycles request-body buffers. Decoded requests never alias the
// body (strings are copied and blobs decoded into fresh slices), so a buffer
// is reusable as soon as the operation returns.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// ReadBody reads the request body into a pooled buffer, refusing bodies over
// limit (413) before reading them when Content-Length says so. The caller
// calls release once nothing refers to the body any more.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, func(), *Error) {
	if r.ContentLength > limit {
		return nil, nil, bodyTooLarge(r.ContentLength, limit)
	}
	bp := bodyPool.Get().(*[]byte)
	release := func() { bodyPool.Put(bp) }
	buf := (*bp)[:0]
	// One spare byte lets the read see EOF without growing the buffer. The
	// up-front reservation is capped: a client that declares a large body and
	// then stalls must not pin 15 MiB (pooled buffers keep their size anyway).
	if n := r.ContentLength; n > 0 && int64(cap(buf)) < n+1 {
		buf = make([]byte, 0, min(n+1, 1<<20))
	}
	buf, err := readAll(http.MaxBytesReader(w, r.Body, limit), buf)
	*bp = buf
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, bodyTooLarge(-1, limit)
		}
		return nil, nil, SerializationError("Could not read the request body: " + err.Error())
	}
	return buf, release, nil
}

// readAll is io.ReadAll into a caller-provided buffer.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func bodyTooLarge(n, limit int64) *Error {
	msg := "Request body exceeds the limit of " + strconv.FormatInt(limit, 10) + " bytes"
	if n >= 0 {
		msg = "Request body of " + strconv.FormatInt(n, 10) + " bytes exceeds the limit of " + strconv.FormatInt(limit, 10) + " bytes"
	}
	return &Error{Type: TypeTooLarge, Message: msg, Status: http.StatusRequestEntityTooLarge}
}
