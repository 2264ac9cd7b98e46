package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func writeAuthFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(p, []byte(consoleAuthYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestServeConsole: serve mounts the console on the API listener by default,
// tells it whether signatures are verified and whether live counters are
// served here (not with --metrics-listen) and to whom (as /metrics, under
// --metrics-auth), and --console=false leaves
// /console/ to the API (which refuses a GET as AWS does).
func TestServeConsole(t *testing.T) {
	if def := newServeCmd(openStore).Flags().Lookup("console").DefValue; def != "true" {
		t.Fatalf("--console defaults to %s, want true", def)
	}
	for _, tc := range []struct {
		name         string
		console      bool
		metrics      string
		wantStatus   int
		wantCounters bool
	}{
		{"console with counters", true, "", 200, true},
		{"metrics elsewhere", true, "127.0.0.1:0", 200, false},
		{"console off", false, "", 403, false},
		{"metrics auth", true, "", 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions()
			o.console, o.metricsListen = tc.console, tc.metrics
			if tc.name == "metrics auth" {
				o.authFile, o.metricsAuth = writeAuthFile(t), true
			}
			ep := serveFor(t, o, nil)
			res, err := http.Get("http://" + ep.plain.String() + "/console/config.json")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("GET /console/config.json: %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus != 200 {
				return
			}
			var doc struct {
				Region   string
				Auth     bool
				Counters bool
			}
			if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if doc.Region != o.region || doc.Auth != (o.authFile != "") || doc.Counters != tc.wantCounters {
				t.Fatalf("config.json: %+v, want region %s, auth false, counters %v", doc, o.region, tc.wantCounters)
			}
			counters, cbody := getBody(t, "http://"+ep.plain.String()+"/console/counters.json")
			want := map[bool]int{true: 200, false: 404}[tc.wantCounters]
			if o.metricsAuth {
				// Unsigned, the counters are refused exactly as /metrics is.
				metrics, mbody := getBody(t, "http://"+ep.plain.String()+"/metrics")
				if metrics == 200 || counters != metrics || cbody != mbody {
					t.Fatalf("unsigned under --metrics-auth: counters.json %d %s, /metrics %d %s", counters, cbody, metrics, mbody)
				}
				return
			}
			if counters != want {
				t.Fatalf("GET /console/counters.json: %d, want %d", counters, want)
			}
		})
	}
}
