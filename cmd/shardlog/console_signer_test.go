package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shardlog/shardlog/api/auth"
)

// checkSigner runs the console's SigV4 signer in the page, with WebCrypto
// and with its plain-JavaScript fallback, and holds it to api/auth's
// verifier: both sign alike, the verifier accepts the signature (session
// token included), and refuses it for a changed body or header. It also
// compares the fallback's SHA-256 and HMAC with WebCrypto's over inputs that
// cross the 55/56/64-byte padding edges and keys longer than a block
// (WebCrypto refuses empty HMAC keys, which SigV4 never has: "AWS4"+secret).
func checkSigner(t *testing.T, b *browser, authFile string) {
	t.Helper()
	const body = `{"StreamName":"s","Data":"aGVsbG8=","PartitionKey":"clé ü ✓"}`
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	script := fmt.Sprintf(`(async () => {
		const m = await import('./sigv4.js');
		const req = { method: 'POST', host: '127.0.0.1:4567', path: '/', body: %q,
			headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'Kinesis_20131202.PutRecord' } };
		const key = { region: 'us-east-1', service: 'kinesis', accessKeyId: 'AKIDTEMP', secretAccessKey: 'temp-secret', sessionToken: 'the-token' };
		const date = new Date(%d);
		const out = { web: await m.sign(req, key, date, m.webCrypto), soft: await m.sign(req, key, date, m.softCrypto), mismatches: [] };
		for (let n = 0; n <= 200; n++) {
			const data = 'x'.repeat(n) + 'é';
			if (m.toHex(await m.webCrypto.sha256(data)) !== m.toHex(await m.softCrypto.sha256(data))) out.mismatches.push('sha256 ' + n);
			if (n %% 10 === 0 && n > 0 && m.toHex(await m.webCrypto.hmac('k'.repeat(n), data)) !== m.toHex(await m.softCrypto.hmac('k'.repeat(n), data))) out.mismatches.push('hmac ' + n);
		}
		out.abc = m.toHex(await m.softCrypto.sha256('abc'));
		return out;
	})()`, body, at.UnixMilli())
	type signed map[string]string
	var got struct {
		Web, Soft  signed
		Mismatches []string
		Abc        string
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserDeadline)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("running the signer in the page: %v", err)
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if len(got.Mismatches) > 0 {
		t.Errorf("fallback SHA-256/HMAC differ from WebCrypto: %v", got.Mismatches)
	}
	if got.Abc != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("fallback sha256(abc) = %s", got.Abc)
	}
	if fmt.Sprint(got.Web) != fmt.Sprint(got.Soft) {
		t.Errorf("WebCrypto and fallback sign differently:\n%v\n%v", got.Web, got.Soft)
	}
	v, err := auth.Load(authFile, "000000000000")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		body       string
		target     string
		wantErrTyp string
	}{
		{"as signed", body, "PutRecord", ""},
		{"body changed", strings.Replace(body, "clé", "cle", 1), "PutRecord", "InvalidSignatureException"},
		{"operation changed", body, "DeleteStream", "InvalidSignatureException"},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4567/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/x-amz-json-1.1")
		r.Header.Set("X-Amz-Target", "Kinesis_20131202."+tc.target)
		for k, val := range got.Web {
			r.Header.Set(k, val)
		}
		id, aerr := v.Verify(r, []byte(tc.body), at.Add(time.Minute))
		switch {
		case tc.wantErrTyp == "" && aerr != nil:
			t.Errorf("%s: the verifier refused the console's signature: %v (headers %v)", tc.name, aerr, got.Web)
		case tc.wantErrTyp == "" && id.AccessKeyID != "AKIDTEMP":
			t.Errorf("%s: verified as %+v", tc.name, id)
		case tc.wantErrTyp != "" && (aerr == nil || aerr.Type != tc.wantErrTyp):
			t.Errorf("%s: verifier answered %v, want %s", tc.name, aerr, tc.wantErrTyp)
		}
	}
}
