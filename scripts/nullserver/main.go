package main

import (
	"io"
	"net/http"
	"os"
)

// Command nullserver is the floor of issue 16's PutRecord measurement: Go's
// net/http answering every PutRecord with a fixed result, reading the body and
// doing nothing else (no decoding, no storage, no sync). Whatever server CPU
// per request `shardlog bench --server-pid` measures against it is what
// net/http and the kernel's loopback TCP cost before shardlog does any work.
// DescribeStream answers an ACTIVE stream so that bench starts.
//
//	go run ./scripts/nullserver 127.0.0.1:4613 &
//	shardlog bench --endpoint http://127.0.0.1:4613 --stream p4 --shards 4 \
//	    --op putrecord --clients 64 --server-pid $(pgrep nullserver)
func main() {
	resp := []byte(`{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ShardId":"shardId-000000000000"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Amz-Target") == "Kinesis_20131202.DescribeStreamSummary" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Write([]byte(`{"StreamDescriptionSummary":{"StreamName":"p4","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/p4","StreamStatus":"ACTIVE","StreamModeDetails":{"StreamMode":"PROVISIONED"},"RetentionPeriodHours":24,"StreamCreationTimestamp":1.7e9,"EnhancedMonitoring":[],"EncryptionType":"NONE","OpenShardCount":4}}`))
			return
		}
		if r.Header.Get("X-Amz-Target") == "Kinesis_20131202.DescribeStream" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Write([]byte(`{"StreamDescription":{"StreamName":"p4","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/p4","StreamStatus":"ACTIVE","RetentionPeriodHours":24,"StreamCreationTimestamp":1.7e9,"EnhancedMonitoring":[],"EncryptionType":"NONE","HasMoreShards":false,"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}}`))
			return
		}
		if r.Header.Get("X-Amz-Target") != "Kinesis_20131202.PutRecord" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(400)
			w.Write([]byte(`{"__type":"ResourceInUseException","message":"x"}`))
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Write(resp)
	})
	http.ListenAndServe(os.Args[1], h)
}
