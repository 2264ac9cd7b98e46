package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/shardlog/shardlog/storage"
)

// scrapeDuringChange is a store whose monitoring change scrapes /metrics
// while it runs, as a scrape would during a cluster's compare-and-set that
// waits out an election, and notes whether that scrape finished.
type scrapeDuringChange struct {
	storeBackend
	srv     *Server
	scraped chan bool
}

func (b *scrapeDuringChange) SetShardLevelMetrics(ctx context.Context, name string, metrics []string, enable bool) (storage.MonitoringChange, error) {
	done := make(chan struct{})
	go func() {
		b.srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
		close(done)
	}()
	select {
	case <-done:
		b.scraped <- true
	case <-time.After(30 * time.Second): // bounds a scrape blocked by the change (the defect), not a timing
		b.scraped <- false
	}
	return b.storeBackend.SetShardLevelMetrics(ctx, name, metrics, enable)
}

// TestReview4ScrapeNotBlockedByMonitoringChange: a scrape does not wait for
// an Enable/DisableEnhancedMonitoring change in progress, and the change's
// series are exported once it is made.
func TestReview4ScrapeNotBlockedByMonitoringChange(t *testing.T) {
	r := newMonitorRig(t, storage.Options{})
	if err := r.st.CreateStream(context.Background(), storage.CreateStreamInput{Name: "s", ShardCount: 2}); err != nil {
		t.Fatal(err)
	}
	b := &scrapeDuringChange{storeBackend: storeBackend{r.st}, scraped: make(chan bool, 1)}
	b.srv = New(Config{}, b)
	hs := httptest.NewServer(b.srv)
	t.Cleanup(hs.Close)
	r.srv = b.srv
	r.c = kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""), RetryMaxAttempts: 1})

	r.enable("s", true, "IncomingRecords")
	if !<-b.scraped {
		t.Fatal("a scrape waited for the monitoring change to finish")
	}
	checkShardSeries(t, r.scrape(), "s", []shardWant{
		{"shardlog_shard_incoming_records_total", shard0, 0},
		{"shardlog_shard_incoming_records_total", shard1, 0},
		{"shardlog_shard_incoming_bytes_total", shard0, -1},
	})
}
