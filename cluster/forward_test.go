package cluster

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// TestEntriesCodec: forwarded entries decode to what was encoded; a
// truncated, padded or empty body is refused.
func TestEntriesCodec(t *testing.T) {
	es := []entry{{key: "a", data: []byte("x")}, {key: "", data: nil}, {key: "kk", data: bytes.Repeat([]byte{7}, 300)}}
	b := encodeEntries(es)
	got, err := decodeEntries(b)
	if err != nil || len(got) != len(es) {
		t.Fatalf("decode: %v, %d entries", err, len(got))
	}
	for i := range es {
		if got[i].key != es[i].key || !bytes.Equal(got[i].data, es[i].data) {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], es[i])
		}
	}
	for name, bad := range map[string][]byte{"truncated": b[:len(b)-1], "padded": append(bytes.Clone(b), 0), "empty": {}, "no entries": encodeEntries(nil)} {
		if _, err := decodeEntries(bad); err == nil {
			t.Errorf("%s body accepted", name)
		}
	}
	arrival, key, data, err := decodeRecord(encodeRecord(1234, es[2]))
	if err != nil || arrival != 1234 || key != "kk" || !reflect.DeepEqual(data, es[2].data) {
		t.Fatalf("record: %d %q %v %v", arrival, key, len(data), err)
	}
}

// TestEntriesBody: the streamed body of a forwarded put is encodeEntries'
// bytes, and its size their length.
func TestEntriesBody(t *testing.T) {
	for name, es := range map[string][]entry{
		"none":               nil,
		"one":                {{key: "a", data: []byte("x")}},
		"empty key and data": {{key: "", data: nil}, {key: "k", data: []byte{}}},
		"many":               {{key: "a", data: []byte("x")}, {key: "kk", data: bytes.Repeat([]byte{7}, 3000)}, {key: "zzz", data: []byte("yy")}},
	} {
		bufs, size := entriesBody(es)
		got, err := io.ReadAll(&bufs)
		if want := encodeEntries(es); err != nil || !bytes.Equal(got, want) || size != int64(len(want)) {
			t.Errorf("%s: body %x (size %d, %v), want %x", name, got, size, err, want)
		}
	}
}

// TestInternalEndpointsNeedTheKey: the internal paths refuse a request
// without the cluster's forwarding key (it would bypass SigV4), and every
// other path goes to the api.
func TestInternalEndpointsNeedTheKey(t *testing.T) {
	n := &Node{}
	n.keys.Store(&secretKeys{forward: ForwardAuth("s")})
	apiHit := false
	h := n.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { apiHit = true }))
	for _, auth := range []string{"", ForwardAuth("other")} {
		req := httptest.NewRequest(http.MethodPost, "/_cluster/v1/put?group=2", bytes.NewReader(encodeEntries([]entry{{key: "k"}})))
		if auth != "" {
			req.Header.Set(AuthHeader, auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden || apiHit {
			t.Fatalf("auth %q: status %d, api reached %v", auth, w.Code, apiHit)
		}
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	if !apiHit {
		t.Fatal("a Kinesis request did not reach the api")
	}
}

// sink is a connection's writer: it takes bytes and keeps none (no
// ReadFrom, so io.Copy reads the body through a buffer, as net/http does).
type sink struct{ n int64 }

func (s *sink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }

// BenchmarkForwardBody: one shard's share of a PutRecords of 500 x 1 KiB,
// forwarded: "copied" encodes the body first (encodeEntries, as forwardPut
// did), "streamed" reads the records in place (entriesBody).
func BenchmarkForwardBody(b *testing.B) {
	es := make([]entry, 125)
	for i := range es {
		es[i] = entry{key: "partition-key", data: bytes.Repeat([]byte{byte(i)}, 1024)}
	}
	b.Run("copied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			body := encodeEntries(es)
			_, _ = io.Copy(&sink{}, io.LimitReader(bytes.NewReader(body), int64(len(body))))
		}
	})
	b.Run("streamed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			body, size := entriesBody(es)
			_, _ = io.Copy(&sink{}, io.LimitReader(&body, size))
		}
	})
}
