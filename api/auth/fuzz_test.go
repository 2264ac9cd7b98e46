package auth

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzParseAuthorization: the Authorization header parser never panics, and
// what it accepts is well formed; Verify answers any such header with an
// AWS error, never a panic.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDADMIN/20260304/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abcdef")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request,SignedHeaders=host,Signature=0")
	f.Add("AWS4-HMAC-SHA256 Credential=, SignedHeaders=;;, Signature==")
	f.Add("AWS4-HMAC-SHA256 Signature=a, Signature=b")
	f.Add("")
	f.Add(" , ,")
	v, err := Load(writeFile(f, testFile), "000000000000")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, ok := parseAuthorization(h)
		if ok && (a.algorithm != algorithm || a.credential == "" || a.signedHeaders == "" || a.signature == "") {
			t.Fatalf("accepted %q as %+v", h, a)
		}
		r := request(body)
		r.Header["Authorization"] = []string{h}
		r.Header.Set("X-Amz-Date", "20260304T050607Z")
		id, e := v.Verify(r, []byte(body), signTime)
		if e == nil {
			t.Fatalf("%q verified as %+v", h, id)
		}
		if e.Status != http.StatusBadRequest || !strings.HasSuffix(e.Type, "Exception") {
			t.Fatalf("%q: %v", h, e)
		}
	})
}
