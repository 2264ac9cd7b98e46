package auth

import (
	"net/http"
	"net/url"
	"strings"
)

const algorithm = "AWS4-HMAC-SHA256"

// sigInput is what a request says about its signature, from the
// Authorization header or the presigned query.
type sigInput struct {
	presigned     bool
	accessKeyID   string
	scopeDate     string // yyyymmdd
	region        string
	service       string
	signedHeaders []string // lower case, as the client listed them
	signature     string
	amzDate       string // X-Amz-Date (or the Date header), as sent
	token         string // X-Amz-Security-Token, as sent
	expires       string // X-Amz-Expires (presigned only), as sent
	contentSHA256 string // X-Amz-Content-Sha256, as sent
	query         url.Values
}

// authorization is a parsed Authorization header.
type authorization struct {
	algorithm     string
	credential    string
	signedHeaders string
	signature     string
}

// parseAuthorization splits "ALG Credential=..., SignedHeaders=..., Signature=..."
// into its parts. It reports false when a part is missing or repeated; the
// caller has already answered AWS's texts for malformed headers (wire.CheckAuth),
// so false only guards against what that check lets through.
func parseAuthorization(h string) (authorization, bool) {
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	a := authorization{algorithm: alg}
	for _, field := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			if strings.TrimSpace(field) == "" {
				continue
			}
			return a, false
		}
		var dst *string
		switch k {
		case "Credential":
			dst = &a.credential
		case "SignedHeaders":
			dst = &a.signedHeaders
		case "Signature":
			dst = &a.signature
		default:
			return a, false
		}
		if *dst != "" {
			return a, false
		}
		*dst = strings.TrimSpace(v)
	}
	ok := a.algorithm == algorithm && a.credential != "" && a.signedHeaders != "" && a.signature != ""
	return a, ok
}

// readSigInput reads r's signature parts; ok is false when they do not parse.
func readSigInput(r *http.Request) (in sigInput, ok bool) {
	if r.Header.Get("Authorization") != "" {
		return readHeaderInput(r)
	}
	return readQueryInput(r)
}

func readHeaderInput(r *http.Request) (sigInput, bool) {
	a, ok := parseAuthorization(r.Header.Get("Authorization"))
	if !ok {
		return sigInput{}, false
	}
	in := sigInput{
		signature: a.signature, token: r.Header.Get("X-Amz-Security-Token"),
		contentSHA256: r.Header.Get("X-Amz-Content-Sha256"), amzDate: r.Header.Get("X-Amz-Date"),
		query: r.URL.Query(),
	}
	if in.amzDate == "" {
		in.amzDate = r.Header.Get("Date")
	}
	return in, in.setScope(a.credential) && in.setSignedHeaders(a.signedHeaders)
}

func readQueryInput(r *http.Request) (sigInput, bool) {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != algorithm {
		return sigInput{}, false
	}
	in := sigInput{
		presigned: true, signature: q.Get("X-Amz-Signature"), token: q.Get("X-Amz-Security-Token"),
		amzDate: q.Get("X-Amz-Date"), expires: q.Get("X-Amz-Expires"), query: q,
		contentSHA256: r.Header.Get("X-Amz-Content-Sha256"),
	}
	if v := q.Get("X-Amz-Content-Sha256"); v != "" {
		in.contentSHA256 = v
	}
	if in.token == "" {
		in.token = r.Header.Get("X-Amz-Security-Token")
	}
	return in, in.signature != "" && in.setScope(q.Get("X-Amz-Credential")) && in.setSignedHeaders(q.Get("X-Amz-SignedHeaders"))
}

// setScope reads AKID/yyyymmdd/region/service/aws4_request.
func (in *sigInput) setScope(credential string) bool {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return false
	}
	in.accessKeyID, in.scopeDate, in.region, in.service = parts[0], parts[1], parts[2], parts[3]
	return true
}

// setSignedHeaders reads "h1;h2;...": lower-case names, no empty ones.
func (in *sigInput) setSignedHeaders(list string) bool {
	if list == "" {
		return false
	}
	in.signedHeaders = strings.Split(list, ";")
	for _, h := range in.signedHeaders {
		if h == "" || h != strings.ToLower(h) {
			return false
		}
	}
	return true
}
