package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strconv"
	"testing"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

const limitsPage = " Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits."

// TestStorageMessages pins AWS's text for every storage Reason, as the
// storage layer worded them before the texts moved here.
func TestStorageMessages(t *testing.T) {
	acct := "123456789012"
	f := func(m func(*storage.Facts)) storage.Facts {
		x := storage.Facts{Account: acct, Stream: "s", Shard: "shardId-000000000001"}
		if m != nil {
			m(&x)
		}
		return x
	}
	tests := []struct {
		reason storage.Reason
		facts  storage.Facts
		want   string
	}{
		{storage.ReasonStreamNotFound, f(nil), "Stream s under account 123456789012 not found."},
		{storage.ReasonStreamExists, f(nil), "Stream s under account 123456789012 already exists."},
		{storage.ReasonNotActive, f(func(x *storage.Facts) { x.State = storage.StatusCreating }), "Stream s under account 123456789012 not ACTIVE, instead in state CREATING"},
		{storage.ReasonNoOpenShard, f(func(x *storage.Facts) { x.Given = "42" }), "Stream s under account 123456789012 has no open shard for hash key 42."},
		{storage.ReasonOnDemand, f(nil), "Resharding is not supported for stream s under account 123456789012 because it is in ON_DEMAND capacity mode."},
		{storage.ReasonThrottled, f(nil), "Rate exceeded for shard shardId-000000000001 in stream s under account 123456789012."},
		{storage.ReasonMerged, f(nil), "Shard shardId-000000000001 in stream s under account 123456789012 has already been merged or split, and thus is not eligible for merging or splitting."},
		{storage.ReasonShardGone, f(nil), "Shard shardId-000000000001 in stream s under account 123456789012 does not exist"},
		{storage.ReasonBadShardID, f(func(x *storage.Facts) { x.Given = "shardId-x" }), "Could not find shard shardId-x in stream s under account 123456789012."},
		{storage.ReasonNoSuchShard, f(nil), "Could not find shard shardId-000000000001 in stream s under account 123456789012."},
		{storage.ReasonTooManyTags, f(func(x *storage.Facts) { x.Limit = 50 }), "Failed to add tags to stream s under account 123456789012 because a given stream cannot have more than 50 tags associated with it."},
		{storage.ReasonBadSplitKey, f(func(x *storage.Facts) { x.Given, x.Start, x.End = "0", "0", "99" }),
			"NewStartingHashKey 0 used in SplitShard() on shard shardId-000000000001 in stream s under account 123456789012 is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey 99."},
		{storage.ReasonNotAdjacent, f(func(x *storage.Facts) { x.Shard2 = "shardId-000000000003" }),
			"Shards shardId-000000000001 and shardId-000000000003 in stream s under account 123456789012 are not an adjacent pair of shards eligible for merging"},
		{storage.ReasonOrderingSeq, f(func(x *storage.Facts) { x.Given = "7" }), "ExclusiveMinimumSequenceNumber 7 used in PutRecord on stream s under account 123456789012 is invalid."},
		{storage.ReasonIterType, f(func(x *storage.Facts) { x.Given = "OLDEST" }), "Invalid ShardIteratorType OLDEST."},
		{storage.ReasonFutureTime, f(func(x *storage.Facts) { x.N, x.Limit = 2000, 1000 }),
			"The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: 2000, currentTimestampInMillis: 1000"},
		{storage.ReasonStartSeq, f(func(x *storage.Facts) { x.Given = "5" }),
			"StartingSequenceNumber 5 used in GetShardIterator on shard shardId-000000000001 in stream s under account 123456789012 is invalid."},
		{storage.ReasonSeqShard, f(func(x *storage.Facts) { x.Shard2 = "shardId-000000000005" }),
			"Invalid StartingSequenceNumber. It encodes shardId-000000000005, while it was used in a call to a shard with shardId-000000000001"},
		{storage.ReasonSeqStream, f(func(x *storage.Facts) { x.Given = "5" }),
			"StartingSequenceNumber 5 used in GetShardIterator on shard shardId-000000000001 in stream s under account 123456789012 is invalid because it did not come from this stream."},
		{storage.ReasonSeqShard, f(func(x *storage.Facts) { x.Shard2 = "shardId--02147483648" }),
			"Invalid StartingSequenceNumber. It encodes shardId--02147483648, while it was used in a call to a shard with shardId-000000000001"},
		{storage.ReasonSeqLegacy, f(func(x *storage.Facts) { x.Given = "1" }), ""},
		{storage.ReasonSeqMax, f(nil), "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max possible value for the shard."},
		{storage.ReasonRetentionMin, f(func(x *storage.Facts) { x.N, x.Limit = 1, 24 }), "Minimum allowed retention period is 24 hours. Requested retention period (1 hours) is too short."},
		{storage.ReasonRetentionMax, f(func(x *storage.Facts) { x.N, x.Limit = 9000, 8760 }), "Maximum allowed retention period is 8760 hours. Requested retention period (9000 hours) is too long."},
		{storage.ReasonRetentionLower, f(func(x *storage.Facts) { x.N, x.Current = 24, 48 }),
			"Requested retention period (24 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API."},
		{storage.ReasonRetentionRaise, f(func(x *storage.Facts) { x.N, x.Current = 72, 48 }),
			"Requested retention period (72 hours) for stream s can not be longer than existing retention period (48 hours). Use IncreaseRetentionPeriod API."},
		{storage.ReasonMaxShards, f(func(x *storage.Facts) { x.Limit, x.Current, x.Target = 10000, 1, 10001 }),
			"Target shard count or number of open shards cannot be greater than 10000. Current open shard count: 1, Target shard count: 10001"},
		{storage.ReasonScaleUp, f(func(x *storage.Facts) { x.Current, x.Target = 2, 5 }),
			"UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: 2, Target shard count: 5"},
		{storage.ReasonScaleDown, f(func(x *storage.Facts) { x.Current, x.Target = 5, 2 }),
			"UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: 5, Target shard count: 2"},
		{storage.ReasonScalingCalls, f(func(x *storage.Facts) { x.Limit = 10 }), "Exceeded the limit of 10 UpdateShardCount calls per rolling 24 hours for stream s under account 123456789012."},
		{storage.ReasonShardLimit, f(func(x *storage.Facts) { x.Current, x.Limit, x.N = 500, 500, 1 }),
			"This request would exceed the shard limit for the account 123456789012 in eu-west-1. Current shard count for the account: 500. Limit: 500. " +
				"Number of additional shards that would have resulted from this request: 1." + limitsPage},
		// Consumer texts: shardlog's in AWS's style, unverified (messages.go).
		{storage.ReasonConsumerNotFound, f(func(x *storage.Facts) { x.Consumer = "c" }), "Consumer c under stream s and account 123456789012 not found."},
		{storage.ReasonConsumerExists, f(func(x *storage.Facts) { x.Consumer = "c" }), "Consumer c under stream s and account 123456789012 already exists."},
		{storage.ReasonConsumerNotActive, f(func(x *storage.Facts) { x.Consumer, x.N = "c", 1700000000123 }),
			"Consumer c with creation timestamp 1700000000 under stream s and account 123456789012 is not in ACTIVE status."},
		{storage.ReasonConsumerLimit, f(func(x *storage.Facts) { x.Limit = 20 }), "Stream s under account 123456789012 already has the maximum of 20 registered consumers."},
		{storage.ReasonConsumersCreating, f(func(x *storage.Facts) { x.Limit = 5 }),
			"Stream s under account 123456789012 already has 5 consumers in CREATING status. Only 5 consumers can be created at the same time."},
		{storage.ReasonHasConsumers, f(func(x *storage.Facts) { x.Current = 2 }),
			"Stream s under account 123456789012 has 2 registered consumers. Set EnforceConsumerDeletion to delete the stream together with its consumers."},
		// Encryption texts: KMS's own wording, unverified for Kinesis (messages.go).
		{storage.ReasonKeyChanges, f(func(x *storage.Facts) { x.Limit = 25 }), "Exceeded the limit of 25 encryption key changes per rolling 24 hours for stream s under account 123456789012."},
		{storage.ReasonKMSNotFound, f(func(x *storage.Facts) { x.Given = "alias/nope" }), "Alias arn:aws:kms:eu-west-1:123456789012:alias/nope is not found."},
		{storage.ReasonKMSNotFound, f(func(x *storage.Facts) { x.Given = "arn:aws:kms:us-east-1:1:alias/nope" }), "Alias arn:aws:kms:us-east-1:1:alias/nope is not found."},
		{storage.ReasonKMSNotFound, f(func(x *storage.Facts) { x.Given = "1234" }), "Key 'arn:aws:kms:eu-west-1:123456789012:key/1234' does not exist"},
		{storage.ReasonKMSNotFound, f(func(x *storage.Facts) { x.Given = "arn:aws:kms:us-east-1:1:key/1234" }), "Key 'arn:aws:kms:us-east-1:1:key/1234' does not exist"},
		{storage.ReasonKMSDisabled, f(func(x *storage.Facts) { x.Given = "1234" }), "arn:aws:kms:eu-west-1:123456789012:key/1234 is disabled."},
		{storage.ReasonKMSInvalidState, f(func(x *storage.Facts) { x.Given = "alias/x" }), "arn:aws:kms:eu-west-1:123456789012:alias/x is pending deletion."},
		{storage.ReasonNoLeader, f(nil), "Service Unavailable: no leader for shard shardId-000000000001 in stream s under account 123456789012 within an election timeout; retry the request."},
		{storage.ReasonNoLeader, f(func(x *storage.Facts) { x.Shard = "" }), "Service Unavailable: no leader for the stream metadata within an election timeout; retry the request."},
		{storage.ReasonClusterUnsupported, f(func(x *storage.Facts) { x.Given = "Enhanced fan-out" }), "Enhanced fan-out is not supported in cluster mode yet."},
	}
	for _, tc := range tests {
		if got := storageMessage(&storage.Error{Reason: tc.reason, Facts: tc.facts}, "eu-west-1"); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.reason, got, tc.want)
		}
	}
}

// TestEveryReasonIsWorded reads storage's Reason constants from its source,
// so a Reason added there without a text here fails. The server-side causes
// are worded by their sentinel (internalCauses) instead.
func TestEveryReasonIsWorded(t *testing.T) {
	internal := map[string]bool{"ReasonShutdown": true, "ReasonShardClosed": true, "ReasonDiskFull": true, "ReasonReadOnly": true}
	file, err := parser.ParseFile(token.NewFileSet(), "../storage/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range file.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			name := vs.Names[0].Name
			value, _ := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			n++
			if _, worded := messageTemplates[storage.Reason(value)]; worded == internal[name] {
				t.Errorf("%s: worded by a template %v, an internal cause %v", name, worded, internal[name])
			}
		}
	}
	if n < 30 {
		t.Fatalf("found %d Reason constants in storage/errors.go; the parse missed them", n)
	}
}

// TestUnavailable: cluster mode's "no leader" is AWS's common 503
// ServiceUnavailable, which SDKs retry.
func TestUnavailable(t *testing.T) {
	err := &storage.Error{Kind: storage.ErrUnavailable, Reason: storage.ReasonNoLeader, Facts: storage.Facts{Account: "123456789012"}}
	got := toAPIError(err, "us-east-1")
	want := wire.Error{Type: wire.TypeServiceUnavailable, Status: http.StatusServiceUnavailable,
		Message: "Service Unavailable: no leader for the stream metadata within an election timeout; retry the request."}
	if *got != want {
		t.Fatalf("toAPIError = %+v, want %+v", *got, want)
	}
}

// TestServiceFault: a request AWS fails on its side is a 500 InternalFailure
// worded by its template alone (for a version-0 number, no message at all).
func TestServiceFault(t *testing.T) {
	err := fmt.Errorf("position: %w", &storage.Error{Kind: storage.ErrServiceFault, Reason: storage.ReasonSeqLegacy,
		Facts: storage.Facts{Given: "0", Shard: "shardId-000000000000"}})
	got := toAPIError(err, "us-east-1")
	want := wire.Error{Type: wire.TypeInternalFailure, Status: http.StatusInternalServerError}
	if *got != want {
		t.Fatalf("toAPIError = %+v, want %+v", *got, want)
	}
}
