package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestServeConsole: serve mounts the console on the API listener by default,
// tells it whether signatures are verified and whether live counters are
// served here (not with --metrics-listen), and --console=false leaves
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions()
			o.console, o.metricsListen = tc.console, tc.metrics
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
			if doc.Region != o.region || doc.Auth || doc.Counters != tc.wantCounters {
				t.Fatalf("config.json: %+v, want region %s, auth false, counters %v", doc, o.region, tc.wantCounters)
			}
			cres, err := http.Get("http://" + ep.plain.String() + "/console/counters.json")
			if err != nil {
				t.Fatal(err)
			}
			cres.Body.Close()
			if want := map[bool]int{true: 200, false: 404}[tc.wantCounters]; cres.StatusCode != want {
				t.Fatalf("GET /console/counters.json: %d, want %d", cres.StatusCode, want)
			}
		})
	}
}
