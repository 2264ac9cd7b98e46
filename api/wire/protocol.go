package wire

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
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
	// then stalls must not pin 11 MiB (pooled buffers keep their size anyway).
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
