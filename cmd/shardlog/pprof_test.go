package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestPprofListen: --pprof-listen serves Go's profiles on its own address,
// and without it nothing is served.
func TestPprofListen(t *testing.T) {
	o := testOptions()
	addr, stop, err := o.startPprof(hclog.NewNullLogger())
	if err != nil || addr != nil {
		t.Fatalf("without --pprof-listen: %v, %v", addr, err)
	}
	stop()

	o.pprofListen = "127.0.0.1:0"
	addr, stop, err = o.startPprof(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
	}
}
