package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/shardlog/shardlog/api/wire"
)

const testFile = `
credentials:
  - access_key_id: AKIDADMIN
    secret_access_key: admin-secret
    session_token: ""
    account_id: "111122223333"
    user: admin
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
  - access_key_id: AKIDTEMP
    secret_access_key: temp-secret
    session_token: the-token
    user: temp
    policies:
      - Version: "2012-10-17"
        Statement:
          - Effect: Deny
            Action: kinesis:DeleteStream
            Resource: "*"
`

var signTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const body = `{"StreamName":"s","Data":"aGVsbG8=","PartitionKey":"k"}`

func writeFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newVerifier(t *testing.T) *Verifier {
	t.Helper()
	v, err := Load(writeFile(t, testFile), "000000000000")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// request is a Kinesis call as an SDK sends it, as the server receives it.
func request(b string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4567/", strings.NewReader(b))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "Kinesis_20131202.PutRecord")
	r.Header.Set("User-Agent", "aws-sdk-go-v2/1.0")
	return r
}

func hashOf(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}

// sign signs r as the SDK does.
func sign(t *testing.T, r *http.Request, akid, secret, token, region string, at time.Time, payloadHash string) {
	t.Helper()
	creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payloadHash, "kinesis", region, at); err != nil {
		t.Fatal(err)
	}
}

func signed(t *testing.T) *http.Request {
	r := request(body)
	sign(t, r, "AKIDADMIN", "admin-secret", "", "eu-west-1", signTime, hashOf(body))
	return r
}

func TestVerifyAccepts(t *testing.T) {
	v := newVerifier(t)
	cases := []struct {
		name string
		req  func(t *testing.T) *http.Request
		now  time.Time
		user string
	}{
		{"header", signed, signTime, "admin"},
		{"skew just inside, late", signed, signTime.Add(MaxSkew), "admin"},
		{"skew just inside, early", signed, signTime.Add(-MaxSkew), "admin"},
		{"session token", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDTEMP", "temp-secret", "the-token", "us-east-1", signTime, hashOf(body))
			return r
		}, signTime, "temp"},
		{"unsigned payload", func(t *testing.T) *http.Request {
			r := request(body)
			r.Header.Set("X-Amz-Content-Sha256", UnsignedPayload)
			sign(t, r, "AKIDADMIN", "admin-secret", "", "us-east-1", signTime, UnsignedPayload)
			return r
		}, signTime, "admin"},
		{"declared payload hash", func(t *testing.T) *http.Request {
			r := request(body)
			r.Header.Set("X-Amz-Content-Sha256", hashOf(body))
			sign(t, r, "AKIDADMIN", "admin-secret", "", "us-east-1", signTime, hashOf(body))
			return r
		}, signTime, "admin"},
		{"user-agent signed", func(t *testing.T) *http.Request {
			// Older SDKs sign User-Agent, which today's signer skips.
			return signedWithUserAgent(t)
		}, signTime, "admin"},
		{"presigned", func(t *testing.T) *http.Request { return presigned(t, hashOf(body), "") }, signTime.Add(time.Minute), "admin"},
		{"presigned unsigned payload", func(t *testing.T) *http.Request { return presigned(t, UnsignedPayload, "") }, signTime, "admin"},
		{"presigned expires", func(t *testing.T) *http.Request { return presigned(t, hashOf(body), "3600") }, signTime.Add(59 * time.Minute), "admin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, e := v.Verify(c.req(t), []byte(body), c.now)
			if e != nil {
				t.Fatalf("Verify: %v", e)
			}
			if id.User != c.user {
				t.Fatalf("user %q, want %q", id.User, c.user)
			}
		})
	}
}

// signedWithUserAgent signs like an SDK that includes user-agent in
// SignedHeaders, computing the signature with a copy whose header key is
// lower case (the signer skips "User-Agent").
func signedWithUserAgent(t *testing.T) *http.Request {
	r := request(body)
	cp := request(body)
	cp.Header.Del("User-Agent")
	cp.Header["user-agent"] = []string{"aws-sdk-go-v2/1.0"}
	sign(t, cp, "AKIDADMIN", "admin-secret", "", "us-east-1", signTime, hashOf(body))
	if !strings.Contains(cp.Header.Get("Authorization"), "user-agent") {
		t.Fatal("user-agent not signed")
	}
	r.Header.Set("Authorization", cp.Header.Get("Authorization"))
	r.Header.Set("X-Amz-Date", cp.Header.Get("X-Amz-Date"))
	return r
}

// presigned is a presigned URL made by the SDK's PresignHTTP, received with
// the signed headers and the body.
func presigned(t *testing.T, payloadHash, expires string) *http.Request {
	t.Helper()
	r := request(body)
	if expires != "" {
		r.URL.RawQuery = "X-Amz-Expires=" + expires
	}
	creds := aws.Credentials{AccessKeyID: "AKIDADMIN", SecretAccessKey: "admin-secret"}
	u, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, payloadHash, "kinesis", "us-east-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	got := httptest.NewRequest(http.MethodPost, pu.RequestURI(), strings.NewReader(body))
	got.Host = pu.Host
	for k, vs := range hdr {
		if !strings.EqualFold(k, "host") {
			got.Header[http.CanonicalHeaderKey(k)] = vs
		}
	}
	got.Header.Set("User-Agent", "curl/8")
	return got
}

func TestVerifyRejects(t *testing.T) {
	v := newVerifier(t)
	const mismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	cases := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		body    string
		now     time.Time
		typ     string
		message string
	}{
		{"tampered body", signed, `{"StreamName":"s","Data":"aGVsbG8=","PartitionKey":"x"}`, signTime, wire.TypeInvalidSignature, mismatch},
		{"tampered signed header", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("X-Amz-Target", "Kinesis_20131202.DeleteStream")
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"tampered date", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("X-Amz-Date", "20260304T050608Z")
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"tampered region", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/eu-west-1/", "/us-east-1/", 1))
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"wrong secret", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDADMIN", "not-the-secret", "", "us-east-1", signTime, hashOf(body))
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"tampered signature", func(t *testing.T) *http.Request {
			r := signed(t)
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-1]+string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", a[len(a)-1])+1)%16]))
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"unsigned header added to signed list", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=", "SignedHeaders=accept;", 1))
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"declared hash of another body", func(t *testing.T) *http.Request {
			r := request(body)
			r.Header.Set("X-Amz-Content-Sha256", hashOf("other"))
			sign(t, r, "AKIDADMIN", "admin-secret", "", "us-east-1", signTime, hashOf("other"))
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"unknown key", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDNOBODY", "x", "", "us-east-1", signTime, hashOf(body))
			return r
		}, body, signTime, "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"missing session token", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDTEMP", "temp-secret", "", "us-east-1", signTime, hashOf(body))
			return r
		}, body, signTime, "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"wrong session token", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDTEMP", "temp-secret", "other-token", "us-east-1", signTime, hashOf(body))
			return r
		}, body, signTime, "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"token on a long-term key", func(t *testing.T) *http.Request {
			r := request(body)
			sign(t, r, "AKIDADMIN", "admin-secret", "a-token", "us-east-1", signTime, hashOf(body))
			return r
		}, body, signTime, "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"expired", signed, body, signTime.Add(MaxSkew + time.Second), wire.TypeInvalidSignature,
			"Signature expired: 20260304T050607Z is now earlier than 20260304T050608Z (20260304T051108Z - 5 min.)"},
		{"not yet current", signed, body, signTime.Add(-MaxSkew - time.Second), wire.TypeInvalidSignature,
			"Signature not yet current: 20260304T050607Z is still later than 20260304T050606Z (20260304T050106Z + 5 min.)"},
		{"presigned expired", func(t *testing.T) *http.Request { return presigned(t, hashOf(body), "60") }, body, signTime.Add(61 * time.Second), wire.TypeInvalidSignature,
			"Signature expired: 20260304T050607Z is now earlier than 20260304T050608Z (20260304T050708Z - 1 min.)"},
		{"presigned tampered body", func(t *testing.T) *http.Request { return presigned(t, hashOf(body), "") }, `{"StreamName":"t"}`, signTime, wire.TypeInvalidSignature, mismatch},
		{"presigned tampered query", func(t *testing.T) *http.Request {
			r := presigned(t, hashOf(body), "60")
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Expires=60", "X-Amz-Expires=600", 1)
			return r
		}, body, signTime, wire.TypeInvalidSignature, mismatch},
		{"scope date differs", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/20260304/", "/20260305/", 1))
			return r
		}, body, signTime, wire.TypeInvalidSignature,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20260305' != '20260304', from '20260304T050607Z'."},
		{"wrong service", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/kinesis/", "/dynamodb/", 1))
			return r
		}, body, signTime, wire.TypeInvalidSignature, "Credential should be scoped to correct service: 'kinesis'. "},
		{"no authentication", func(t *testing.T) *http.Request { return request(body) }, body, signTime, wire.TypeMissingAuth, "Missing Authentication Token"},
		{"bad date", func(t *testing.T) *http.Request {
			r := signed(t)
			r.Header.Set("X-Amz-Date", "yesterday")
			return r
		}, body, signTime, wire.TypeIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got 'yesterday'. See http://en.wikipedia.org/wiki/ISO_8601"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, e := v.Verify(c.req(t), []byte(c.body), c.now)
			if e == nil {
				t.Fatalf("accepted as %+v", id)
			}
			if e.Type != c.typ || e.Message != c.message || e.Status != http.StatusBadRequest {
				t.Fatalf("got %d %s %q\nwant %s %q", e.Status, e.Type, e.Message, c.typ, c.message)
			}
		})
	}
}

func TestIdentityFromFile(t *testing.T) {
	v := newVerifier(t)
	id, e := v.Verify(signed(t), []byte(body), signTime)
	if e != nil {
		t.Fatal(e)
	}
	if id.AccessKeyID != "AKIDADMIN" || id.Account != "111122223333" || id.User != "admin" || len(id.Policies) != 1 {
		t.Fatalf("identity %+v", id)
	}
	if want := `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}`; !jsonEqual(t, id.Policies[0], want) {
		t.Fatalf("policy %s", id.Policies[0])
	}
	r := request(body)
	sign(t, r, "AKIDTEMP", "temp-secret", "the-token", "us-east-1", signTime, hashOf(body))
	id, e = v.Verify(r, []byte(body), signTime)
	if e != nil {
		t.Fatal(e)
	}
	if id.Account != "000000000000" {
		t.Fatalf("default account: %q", id.Account)
	}
	if want := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kinesis:DeleteStream","Resource":"*"}]}`; !jsonEqual(t, id.Policies[0], want) {
		t.Fatalf("YAML policy as JSON: %s", id.Policies[0])
	}
}

func TestReload(t *testing.T) {
	path := writeFile(t, testFile)
	v, err := Load(path, "000000000000")
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() *http.Request {
		r := request(body)
		sign(t, r, "AKIDNEW", "new-secret", "", "us-east-1", signTime, hashOf(body))
		return r
	}
	if _, e := v.Verify(newKey(), []byte(body), signTime); e == nil || e.Type != "UnrecognizedClientException" {
		t.Fatalf("before reload: %v", e)
	}
	next := testFile + "  - access_key_id: AKIDNEW\n    secret_access_key: new-secret\n    user: new\n"
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if id, e := v.Verify(newKey(), []byte(body), signTime); e != nil || id.User != "new" {
		t.Fatalf("after reload: %v %+v", e, id)
	}
	// A broken file leaves the credentials in force.
	if err := os.WriteFile(path, []byte("credentials: [ {access_key_id: "), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err == nil {
		t.Fatal("broken file reloaded")
	}
	if _, e := v.Verify(newKey(), []byte(body), signTime); e != nil {
		t.Fatalf("after failed reload: %v", e)
	}
}

func TestLoadRejects(t *testing.T) {
	cases := map[string]string{
		"no secret":          "credentials:\n  - access_key_id: A\n",
		"duplicate key":      "credentials:\n  - {access_key_id: A, secret_access_key: s}\n  - {access_key_id: A, secret_access_key: t}\n",
		"bad account":        "credentials:\n  - {access_key_id: A, secret_access_key: s, account_id: 12}\n",
		"policy not object":  "credentials:\n  - {access_key_id: A, secret_access_key: s, policies: [[1]]}\n",
		"policy bad json":    "credentials:\n  - {access_key_id: A, secret_access_key: s, policies: ['{nope']}\n",
		"unknown field":      "credentials:\n  - {access_key_id: A, secret_access_key: s, secret: x}\n",
		"not yaml":           "credentials: [",
		"credentials scalar": "credentials: 3\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(writeFile(t, content), "000000000000"); err == nil {
				t.Fatal("loaded")
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), "000000000000"); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestLoadJSONAndStringPolicy(t *testing.T) {
	content := `{"credentials":[{"access_key_id":"A","secret_access_key":"s","account_id":111122223333,
		"policies":["{\"Version\":\"2012-10-17\",\"Statement\":[]}"]}]}`
	v, err := Load(writeFile(t, content), "000000000000")
	if err != nil {
		t.Fatal(err)
	}
	c := (*v.keys.Load())["A"]
	if c.id.Account != "111122223333" || string(c.id.Policies[0]) != `{"Version":"2012-10-17","Statement":[]}` {
		t.Fatalf("%+v %s", c.id, c.id.Policies[0])
	}
}
