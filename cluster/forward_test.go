package cluster

import (
	"bytes"
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
