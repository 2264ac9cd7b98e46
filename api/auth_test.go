package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/api/wire"
)

const authFile = `credentials:
  - access_key_id: AKIDADMIN
    secret_access_key: admin-secret
    user: admin
    policies:   # authorization (part 2) denies a key without policies
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
`

func testVerifier(t testing.TB) *auth.Verifier {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(p, []byte(authFile), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.Load(p, "000000000000")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signRequest replaces req's placeholder signature with a real one made by
// the SDK's signer at the given time.
func signRequest(t testing.TB, req *http.Request, body []byte, secret string, at time.Time) *http.Request {
	t.Helper()
	req.Header.Del("Authorization")
	req.Header.Del("X-Amz-Date")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: "AKIDADMIN", SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kinesis", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	return req
}

func newAuthHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.srv = New(Config{Now: h.clock, Auth: testVerifier(t)}, h.fake)
	return h
}

func TestAuthThroughServer(t *testing.T) {
	h := newAuthHarness(t)
	body := `{}`
	signedAt := h.clock()

	r := h.do(signRequest(t, newRequest("ListStreams", body), []byte(body), "admin-secret", signedAt))
	if r.status != http.StatusOK {
		t.Fatalf("signed request: %d %s", r.status, r.raw)
	}
	r = h.do(signRequest(t, newRequest("ListStreams", body), []byte(body), "wrong", signedAt))
	wantError(t, r, http.StatusBadRequest, wire.TypeInvalidSignature, "")
	// The placeholder signature of the other tests is refused.
	wantError(t, h.call("ListStreams", body), http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
	// The target is checked before authentication, as on AWS.
	r = h.do(signRequest(t, newRequest("NoSuchOperation", body), []byte(body), "wrong", signedAt))
	wantError(t, r, http.StatusBadRequest, wire.TypeUnknownOperation, "")
}

func TestAuthStoresIdentity(t *testing.T) {
	h := newAuthHarness(t)
	body := `{}`
	req := signRequest(t, newRequest("ListStreams", body), []byte(body), "admin-secret", h.clock())
	rc := &reqCtx{ctx: req.Context(), w: httptest.NewRecorder(), r: req, codec: wire.JSON11, region: "us-east-1"}
	h.srv.serve(rc)
	if rc.status != http.StatusOK || rc.identity == nil || rc.identity.User != "admin" || rc.identity.Account != "000000000000" {
		t.Fatalf("status %d identity %+v", rc.status, rc.identity)
	}

	plain := newHarness(t)
	rc = &reqCtx{ctx: req.Context(), w: httptest.NewRecorder(), r: newRequest("ListStreams", body), codec: wire.JSON11, region: "us-east-1"}
	plain.srv.serve(rc)
	if rc.status != http.StatusOK || rc.identity != nil {
		t.Fatalf("auth off: status %d identity %+v", rc.status, rc.identity)
	}
}
