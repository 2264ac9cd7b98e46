package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/fxamacker/cbor/v2"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/storage"
)

const mib = 1 << 20

func streamARN(name string) string { return "arn:aws:kinesis:us-east-1:" + account + ":stream/" + name }

// updateMaxRecordSize sets a stream's maximum record size with the SDK and
// waits until it is in effect (the stream ACTIVE again).
func updateMaxRecordSize(t *testing.T, c *kinesis.Client, name string, kib int32) {
	t.Helper()
	_, err := c.UpdateMaxRecordSize(context.Background(), &kinesis.UpdateMaxRecordSizeInput{StreamARN: aws.String(streamARN(name)), MaxRecordSizeInKiB: aws.Int32(kib)})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, name)
	out, err := c.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamARN: aws.String(streamARN(name))})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToInt32(out.StreamDescriptionSummary.MaxRecordSizeInKiB); got != kib {
		t.Fatalf("DescribeStreamSummary reports %d KiB, want %d", got, kib)
	}
}

// cborCall sends one CBOR request, as the Java SDKs and the KCL do, and
// decodes the CBOR answer.
func cborCall(t *testing.T, endpoint, op string, in map[string]any) (int, map[string]any) {
	t.Helper()
	body, err := cbor.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", protocolTypes["cbor"])
	req.Header.Set("X-Amz-Target", "Kinesis_20131202."+op)
	req.Header.Set("Authorization", confAuth)
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any{})}.DecMode()
	if len(raw) > 0 {
		if err := dm.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: CBOR answer: %v", op, err)
		}
	}
	return resp.StatusCode, out
}

// TestLargeRecords: a stream raised to 10 MiB records takes a record of
// exactly 10 MiB (data + partition key) with the Go SDK (JSON) and in CBOR,
// by PutRecord and PutRecords; 10 MiB + 1 is refused with AWS's errors, as
// is 1 MiB + 1 on a default stream. GetRecords returns each record whole,
// one per call once it would overflow what is left of the 10 MiB budget
// (JSON and CBOR), and after a restart the records are there and fsck
// verify finds the segments clean.
func TestLargeRecords(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	ctx := context.Background()
	createStream(t, c, "big", 1)
	createStream(t, c, "small", 1)
	updateMaxRecordSize(t, c, "big", 10240)

	data := randomBytes(10*mib - 1) // with the key "k": 10 MiB exactly
	if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("big"), PartitionKey: aws.String("first"), Data: []byte("small")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, stream, via string // via: PutRecord, PutRecords or cbor (a CBOR PutRecord)
		data              []byte
		wantErr           string
	}{
		{"10 MiB by PutRecord", "big", "PutRecord", data, ""},
		{"10 MiB by PutRecords", "big", "PutRecords", data, ""},
		{"10 MiB in CBOR", "big", "cbor", data, ""},
		{"10 MiB + 1 by PutRecord", "big", "PutRecord", append(data[:len(data):len(data)], 0), "InvalidArgumentException"},
		{"10 MiB + 1 by PutRecords", "big", "PutRecords", append(data[:len(data):len(data)], 0), "InvalidArgumentException"},
		{"10 MiB + 1 in CBOR", "big", "cbor", append(data[:len(data):len(data)], 0), "InvalidArgumentException"},
		{"Data of 10 MiB + 1", "big", "PutRecord", make([]byte, 10*mib+1), "ValidationException"},
		{"1 MiB + 1 on a default stream", "small", "PutRecord", make([]byte, mib), "InvalidArgumentException"},
		{"1 MiB + 1 on a default stream in CBOR", "small", "cbor", make([]byte, mib), "InvalidArgumentException"},
		{"1 MiB on a default stream", "small", "PutRecord", make([]byte, mib-1), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := putVia(t, srv, c, tc.via, tc.stream, tc.data); got != tc.wantErr {
				t.Fatalf("got %q, want %q", got, tc.wantErr)
			}
		})
	}

	want := [][]byte{[]byte("small"), data, data, data}
	checkRead(t, c, want)
	checkReadCBOR(t, srv, c, want)
	srv.stop()
	verifyClean(t, srv.dir, "after 10 MiB records")
	srv.start()
	c = srv.client(1)
	checkRead(t, c, want)
}

// putVia writes one record with key "k" and returns the error code, "" if
// it was stored.
func putVia(t *testing.T, srv *server, c *kinesis.Client, via, stream string, data []byte) string {
	t.Helper()
	ctx := context.Background()
	switch via {
	case "PutRecord":
		_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: data})
		return apiErr(err)
	case "PutRecords":
		out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream),
			Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: data}}})
		if err == nil && aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %s", aws.ToString(out.Records[0].ErrorMessage))
		}
		return apiErr(err)
	}
	status, out := cborCall(t, srv.endpoint, "PutRecord", map[string]any{"StreamName": stream, "PartitionKey": "k", "Data": data})
	if status == http.StatusOK {
		return ""
	}
	typ, _ := out["__type"].(string)
	return typ
}

// checkRead reads shard 0 of "big" with the SDK and wants these records.
func checkRead(t *testing.T, c *kinesis.Client, want [][]byte) {
	t.Helper()
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("big"), ShardId: aws.String(shard0),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	var pages []int
	iter := it.ShardIterator
	for range len(want) + 2 {
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records {
			got = append(got, r.Data)
		}
		pages = append(pages, len(out.Records))
		iter = out.NextShardIterator
	}
	checkRecords(t, "GetRecords", got, want, pages)
}

// checkReadCBOR is checkRead over CBOR, where records' Data are byte strings.
func checkReadCBOR(t *testing.T, srv *server, c *kinesis.Client, want [][]byte) {
	t.Helper()
	it, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("big"), ShardId: aws.String(shard0),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	var pages []int
	iter := aws.ToString(it.ShardIterator)
	for range len(want) + 2 {
		status, out := cborCall(t, srv.endpoint, "GetRecords", map[string]any{"ShardIterator": iter})
		if status != http.StatusOK {
			t.Fatalf("CBOR GetRecords: %d %v", status, out["__type"])
		}
		recs, _ := out["Records"].([]any)
		for _, r := range recs {
			d, _ := r.(map[string]any)["Data"].([]byte)
			got = append(got, d)
		}
		pages = append(pages, len(recs))
		iter, _ = out["NextShardIterator"].(string)
	}
	checkRecords(t, "CBOR GetRecords", got, want, pages)
}

// checkRecords wants the records in order, and the first page to hold the
// small record alone: the 10 MiB record after it overflows the budget left.
func checkRecords(t *testing.T, how string, got, want [][]byte, pages []int) {
	t.Helper()
	if len(got) != len(want) || pages[0] != 1 {
		t.Fatalf("%s: %d records in pages %v, want %d, the first page holding one", how, len(got), pages, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: record %d differs (%d bytes, want %d)", how, i, len(got[i]), len(want[i]))
		}
	}
}

// TestSubscribeLargeRecord: SubscribeToShard delivers a 10 MiB record
// whole, in one event of about 13.4 MiB of JSON, though the event's pacing
// budget is 2 MiB: the SDK's event-stream decoder takes it.
func TestSubscribeLargeRecord(t *testing.T) {
	e := startEFO(t, api.Config{}, storage.Options{}, 1, "app")
	updateMaxRecordSize(t, e.c, "efo", 10240)
	data := randomBytes(10*mib - 1)
	if _, err := e.c.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String("efo"), PartitionKey: aws.String("k"), Data: data}); err != nil {
		t.Fatal(err)
	}
	e.put(t, "after")
	st := e.mustSubscribe(t, "app", shard0, types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon})
	r := read(t, st, 2)
	if len(r.datas) != 2 || r.datas[0] != string(data) || r.datas[1] != "after" {
		t.Fatalf("delivered %d records, want the 10 MiB record and \"after\"", len(r.datas))
	}
}
