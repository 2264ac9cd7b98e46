// Package auth verifies AWS Signature Version 4 on incoming requests against
// the credentials of an auth file (--auth-file), and names the signer.
//
// The expected signature is computed by aws-sdk-go-v2's own signer
// (aws/signer/v4) over a copy of the request rebuilt exactly as received:
// the request's method, path, query, Host and the headers the client listed
// in SignedHeaders (and only those), signed at the request's own X-Amz-Date.
// Canonicalisation is therefore the SDKs' own. The signatures are compared in
// constant time. Every failure is AWS's error type and text as a *wire.Error.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/shardlog/shardlog/api/wire"
)

// Identity is who signed a request.
type Identity struct {
	AccessKeyID string
	Account     string            // the credential's account_id, default the server's account
	User        string            // IAM user name, for ARNs ("arn:aws:iam::ACCOUNT:user/USER") and AccessDenied texts
	Policies    []json.RawMessage // the credential's identity policies, as JSON (YAML policies converted at load)
}

// MaxSkew is how far a request's X-Amz-Date may be from the server's clock,
// either way. Kinesis answers "... - 5 min." (and "Signature not yet current:
// ... + 5 min.") in every captured report.
const MaxSkew = 5 * time.Minute

// UnsignedPayload is the payload hash a client sends (X-Amz-Content-Sha256)
// to sign without the body.
const UnsignedPayload = "UNSIGNED-PAYLOAD"

// amzDateFormat is SigV4's ISO 8601 basic format.
const amzDateFormat = "20060102T150405Z"

// Verifier checks requests against the --auth-file credentials. Reload re-reads the file (SIGHUP);
// a file that fails to load leaves the previous credentials in force and returns the error.
type Verifier struct {
	path           string
	defaultAccount string
	keys           atomic.Pointer[keyring] // swapped whole by Reload; never modified in place
	signer         *v4.Signer              // caches derived signing keys
}

// Load reads the auth file at path. defaultAccount is the account of
// credentials without account_id (the server's --account-id).
func Load(path string, defaultAccount string) (*Verifier, error) {
	v := &Verifier{path: path, defaultAccount: defaultAccount, signer: v4.NewSigner(func(o *v4.SignerOptions) {
		// Presigned requests arrive with whatever the client hoisted
		// already in the query; nothing more may move.
		o.DisableHeaderHoisting = true
	})}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the auth file. On error the credentials in force stay.
func (v *Verifier) Reload() error {
	keys, err := loadKeyring(v.path, v.defaultAccount)
	if err != nil {
		return err
	}
	v.keys.Store(&keys)
	return nil
}

// Len is the number of credentials in force.
func (v *Verifier) Len() int { return len(*v.keys.Load()) }

// Verify checks r's SigV4 signature (header or presigned query), payload hash, clock skew, scope,
// and session token, and returns the signer's identity, or AWS's exact error as a *wire.Error.
// body is r's whole body, already read.
func (v *Verifier) Verify(r *http.Request, body []byte, now time.Time) (*Identity, *wire.Error) {
	if _, e := wire.CheckAuth(r); e != nil {
		return nil, e
	}
	in, ok := readSigInput(r)
	if !ok {
		return nil, wire.ClientError(wire.TypeIncompleteSignature, "Authorization header or query-string parameters are malformed.")
	}
	cred := (*v.keys.Load())[in.accessKeyID]
	if cred == nil {
		return nil, unrecognized()
	}
	signedAt, e := checkTime(in, now)
	if e != nil {
		return nil, e
	}
	if !tokenMatches(cred.token, in.token) {
		return nil, unrecognized()
	}
	if e := v.checkSignature(r, in, cred, signedAt, body); e != nil {
		return nil, e
	}
	id := cred.id
	return &id, nil
}

func unrecognized() *wire.Error {
	return wire.ClientError("UnrecognizedClientException", "The security token included in the request is invalid.")
}

func signatureMismatch() *wire.Error {
	return wire.ClientError(wire.TypeInvalidSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
}

// tokenMatches: a credential with a session token needs exactly that token;
// one without refuses any token.
func tokenMatches(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// checkTime parses the request's date and holds it to the clock window and
// to the credential scope's date.
func checkTime(in sigInput, now time.Time) (time.Time, *wire.Error) {
	t, err := time.Parse(amzDateFormat, in.amzDate)
	if err != nil && !in.presigned {
		t, err = http.ParseTime(in.amzDate)
	}
	if err != nil {
		return t, wire.ClientError(wire.TypeIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '"+in.amzDate+"'. See http://en.wikipedia.org/wiki/ISO_8601")
	}
	now = now.UTC().Truncate(time.Second)
	window, e := validity(in)
	if e != nil {
		return t, e
	}
	if lo := now.Add(-window); t.Before(lo) {
		return t, wire.ClientError(wire.TypeInvalidSignature, "Signature expired: "+t.Format(amzDateFormat)+" is now earlier than "+
			lo.Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" - "+minutes(window)+".)")
	}
	if hi := now.Add(MaxSkew); t.After(hi) {
		return t, wire.ClientError(wire.TypeInvalidSignature, "Signature not yet current: "+t.Format(amzDateFormat)+" is still later than "+
			hi.Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" + "+minutes(MaxSkew)+".)")
	}
	if day := t.Format("20060102"); in.scopeDate != day {
		return t, wire.ClientError(wire.TypeInvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+
			in.scopeDate+"' != '"+day+"', from '"+t.Format(amzDateFormat)+"'.")
	}
	return t, nil
}

// validity is how long after its date a request is accepted: MaxSkew, or a
// presigned URL's X-Amz-Expires (1 s to 7 days, as SigV4 allows).
func validity(in sigInput) (time.Duration, *wire.Error) {
	if !in.presigned || in.expires == "" {
		return MaxSkew, nil
	}
	n, err := strconv.Atoi(in.expires)
	if err != nil || n < 1 || n > 7*24*3600 {
		return 0, wire.ClientError(wire.TypeIncompleteSignature, "X-Amz-Expires must be an integer number of seconds between 1 and 604800. Got '"+in.expires+"'.")
	}
	return time.Duration(n) * time.Second, nil
}

// minutes renders a window as AWS does ("5 min."), in seconds when it is
// not whole minutes.
func minutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + " min"
	}
	return strconv.Itoa(int(d/time.Second)) + " sec"
}

// checkSignature recomputes the signature with the credential's secret over
// the payload hash the request signed, and compares it in constant time.
func (v *Verifier) checkSignature(r *http.Request, in sigInput, cred *credential, signedAt time.Time, body []byte) *wire.Error {
	hashes, ok := payloadHashes(in, body)
	if !ok {
		return signatureMismatch()
	}
	for _, h := range hashes {
		sig, err := v.sign(r, in, cred, signedAt, h)
		if err != nil {
			return wire.InternalFailure("signing: " + err.Error())
		}
		if hmac.Equal([]byte(sig), []byte(strings.ToLower(in.signature))) {
			return nil
		}
	}
	return signatureMismatch()
}

// payloadHashes are the payload hashes the request may have signed, to try in
// order. X-Amz-Content-Sha256 names it: UNSIGNED-PAYLOAD, or the body's
// SHA-256 (any other value cannot match the body: ok is false). Without it,
// the body's hash; a presigned URL may also have been signed with
// UNSIGNED-PAYLOAD, as presigners commonly do (the two give different
// signatures, so trying both accepts nothing the client did not sign).
func payloadHashes(in sigInput, body []byte) ([]string, bool) {
	if in.contentSHA256 == UnsignedPayload {
		return []string{UnsignedPayload}, true
	}
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	if in.contentSHA256 != "" && !strings.EqualFold(in.contentSHA256, h) {
		return nil, false
	}
	if in.presigned && in.contentSHA256 == "" {
		return []string{h, UnsignedPayload}, true
	}
	return []string{h}, true
}

// sign signs a copy of r, rebuilt as received with only its signed headers,
// and returns the signature the client should have sent.
func (v *Verifier) sign(r *http.Request, in sigInput, cred *credential, signedAt time.Time, payloadHash string) (string, error) {
	cp := rebuild(r, in)
	// No session token here: a signed X-Amz-Security-Token is among the
	// copied headers (or the query) already, and the signer would add it twice.
	creds := aws.Credentials{AccessKeyID: in.accessKeyID, SecretAccessKey: cred.secret}
	ctx := context.Background()
	if in.presigned {
		u, _, err := v.signer.PresignHTTP(ctx, creds, cp, payloadHash, in.service, in.region, signedAt)
		if err != nil {
			return "", err
		}
		pu, err := url.Parse(u)
		if err != nil {
			return "", err
		}
		return pu.Query().Get("X-Amz-Signature"), nil
	}
	if err := v.signer.SignHTTP(ctx, creds, cp, payloadHash, in.service, in.region, signedAt); err != nil {
		return "", err
	}
	a, _ := parseAuthorization(cp.Header.Get("Authorization"))
	return a.signature, nil
}

// rebuild copies what r's signature covers: method, path, query (without
// X-Amz-Signature), Host and the signed headers. Header names are stored in
// lower case so that the signer's list of headers it never signs
// (User-Agent, Expect, ..., keyed in canonical case) does not drop a header
// the client did sign; X-Amz-Date stays canonical, as the signer sets it.
func rebuild(r *http.Request, in sigInput) *http.Request {
	q := in.query
	if in.presigned {
		q = url.Values{}
		for k, vs := range in.query {
			if k != "X-Amz-Signature" {
				q[k] = vs
			}
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	cp := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()},
		Host:   r.Host, Header: make(http.Header, len(in.signedHeaders)+1),
	}
	for _, name := range in.signedHeaders {
		switch name {
		case "host":
		case "content-length":
			cp.ContentLength = contentLength(r)
		case "x-amz-date":
			if !in.presigned {
				continue // the signer writes it from signedAt
			}
			cp.Header[name] = r.Header.Values(name)
		default:
			cp.Header[name] = r.Header.Values(name)
		}
	}
	return cp
}

func contentLength(r *http.Request) int64 {
	if v := r.Header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return max(r.ContentLength, 0)
}
