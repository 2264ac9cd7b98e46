package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// newStoreHarness is a harness over a real store (in memory), for the
// operations the fake does not have: streams and consumers are ACTIVE at
// once. Requests are signed for eu-west-1 (testAuth); the account is
// storage's default.
func newStoreHarness(t *testing.T) *harness {
	t.Helper()
	st, err := storage.Open(context.Background(), storage.Options{Dir: t.TempDir(), FS: vfs.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, now: time.Now()}
	h.srv = New(Config{Now: h.clock}, StoreBackend(st))
	return h
}

const storeARN = "arn:aws:kinesis:eu-west-1:000000000000:stream/"

// tagsOf renders a ListTagsFor* answer's Tags as "k=v,k=v".
func tagsOf(r response) string {
	list, _ := r.body["Tags"].([]any)
	var out []string
	for _, x := range list {
		m, _ := x.(map[string]any)
		out = append(out, str(m["Key"])+"="+str(m["Value"]))
	}
	return strings.Join(out, ",")
}

func manyTags(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"t%02d":""`, i)
	}
	return "{" + b.String() + "}"
}

// TestTagsByResource: TagResource, UntagResource and ListTagsForResource
// on a stream see the stream tag operations' tags (CreateStream's
// included), and on a consumer its own (RegisterStreamConsumer's
// included).
func TestTagsByResource(t *testing.T) {
	h := newStoreHarness(t)
	h.ok("CreateStream", `{"StreamName":"s","ShardCount":1,"Tags":{"team":"a"}}`)
	stream := `"ResourceARN":"` + storeARN + `s"`
	if got := tagsOf(h.ok("ListTagsForResource", `{`+stream+`}`)); got != "team=a" {
		t.Fatalf("CreateStream's tags: %q", got)
	}
	h.ok("TagResource", `{`+stream+`,"Tags":{"b":"2","team":"z"}}`)
	h.ok("UntagResource", `{`+stream+`,"TagKeys":["b","absent"]}`)
	h.ok("AddTagsToStream", `{"StreamName":"s","Tags":{"c":"3"}}`)
	if got := tagsOf(h.ok("ListTagsForStream", `{"StreamName":"s"}`)); got != "c=3,team=z" {
		t.Fatalf("ListTagsForStream: %q", got)
	}
	if got := tagsOf(h.ok("ListTagsForResource", `{`+stream+`}`)); got != "c=3,team=z" {
		t.Fatalf("ListTagsForResource: %q", got)
	}

	reg := h.ok("RegisterStreamConsumer", `{"StreamARN":"`+storeARN+`s","ConsumerName":"c","Tags":{"r":"1"}}`)
	carn := str(reg.body["Consumer"].(map[string]any)["ConsumerARN"])
	consumer := `"ResourceARN":"` + carn + `"`
	if got := tagsOf(h.ok("ListTagsForResource", `{`+consumer+`}`)); got != "r=1" {
		t.Fatalf("RegisterStreamConsumer's tags: %q", got)
	}
	h.ok("TagResource", `{`+consumer+`,"Tags":{"x":"1","y":"2"}}`)
	h.ok("UntagResource", `{`+consumer+`,"TagKeys":["r"]}`)
	if got := tagsOf(h.ok("ListTagsForResource", `{`+consumer+`}`)); got != "x=1,y=2" {
		t.Fatalf("consumer tags: %q", got)
	}
	if got := tagsOf(h.ok("ListTagsForResource", `{`+stream+`}`)); got != "c=3,team=z" {
		t.Fatalf("a consumer's tags changed the stream's: %q", got)
	}
	h.ok("UntagResource", `{`+consumer+`,"TagKeys":["x","y"]}`)
	if r := h.ok("ListTagsForResource", `{`+consumer+`}`); r.raw != `{"Tags":[]}` {
		t.Fatalf("no tags: %s", r.raw)
	}
}

// TestTagsByResourceErrors: the stream tag operations' checks and texts, in
// their order: validation, the ARN, the lookup, characters, the aws:
// prefix, the 50-tag limit.
func TestTagsByResourceErrors(t *testing.T) {
	h := newStoreHarness(t)
	h.ok("CreateStream", `{"StreamName":"s","ShardCount":1}`)
	reg := h.ok("RegisterStreamConsumer", `{"StreamARN":"`+storeARN+`s","ConsumerName":"c"}`)
	carn := str(reg.body["Consumer"].(map[string]any)["ConsumerARN"])
	stream, consumer := `"ResourceARN":"`+storeARN+`s"`, `"ResourceARN":"`+carn+`"`
	stale := `"ResourceARN":"` + carn + `1"`
	const notNull = "failed to satisfy constraint: Member must not be null"
	tests := []struct {
		op, body, typ, msg string
	}{
		{"TagResource", `{}`, wire.TypeValidation,
			"2 validation errors detected: Value null at 'tags' " + notNull + "; Value null at 'resourceARN' " + notNull},
		{"UntagResource", `{}`, wire.TypeValidation,
			"2 validation errors detected: Value null at 'tagKeys' " + notNull + "; Value null at 'resourceARN' " + notNull},
		{"ListTagsForResource", `{}`, wire.TypeValidation, "1 validation error detected: Value null at 'resourceARN' " + notNull},
		{"TagResource", `{"ResourceARN":"arn:aws:s3:::b","Tags":{}}`, wire.TypeValidation,
			"2 validation errors detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1; " +
				"Value 'arn:aws:s3:::b' at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern: " + wire.PatternResourceARN},
		{"ListTagsForResource", `{"ResourceARN":"arn:aws:kinesis:eu-west-1:000000000000:mystream/s"}`, wire.TypeInvalidArgument,
			"ResourceARN arn:aws:kinesis:eu-west-1:000000000000:mystream/s is neither a stream ARN nor a consumer ARN."},
		{"ListTagsForResource", `{"ResourceARN":"arn:aws:kinesis:eu-west-1:111122223333:stream/s"}`, wire.TypeResourceNotFound,
			"Stream s under account 111122223333 not found."},
		{"TagResource", `{"ResourceARN":"` + storeARN + `nope","Tags":{";":"v"}}`, wire.TypeResourceNotFound,
			"Stream nope under account 000000000000 not found."},
		{"TagResource", `{` + stale + `,"Tags":{";":"v"}}`, wire.TypeResourceNotFound,
			"Consumer c under stream s and account 000000000000 not found."},
		{"UntagResource", `{` + stale + `,"TagKeys":["k"]}`, wire.TypeResourceNotFound,
			"Consumer c under stream s and account 000000000000 not found."},
		{"TagResource", `{` + stream + `,"Tags":{"k":"a\tb"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"TagResource", `{` + consumer + `,"Tags":{"k":"1%"}}`, wire.TypeInvalidArgument, msgTagPercent("add tags to", "s", "000000000000")},
		{"UntagResource", `{` + consumer + `,"TagKeys":["a%"]}`, wire.TypeInvalidArgument, msgTagPercent("remove tags from", "s", "000000000000")},
		{"TagResource", `{` + consumer + `,"Tags":{"aws:x":"1"}}`, wire.TypeInvalidArgument, "Tag key aws:x is invalid: the aws: prefix is reserved for AWS use."},
		{"TagResource", `{` + stream + `,"Tags":` + manyTags(51) + `}`, wire.TypeInvalidArgument,
			"Failed to add tags to stream s under account 000000000000 because a given stream cannot have more than 50 tags associated with it."},
		{"TagResource", `{` + consumer + `,"Tags":` + manyTags(51) + `}`, wire.TypeInvalidArgument,
			"Failed to add tags to consumer c under stream s and account 000000000000 because a given consumer cannot have more than 50 tags associated with it."},
	}
	for _, tc := range tests {
		t.Run(tc.op+" "+tc.body[:min(len(tc.body), 60)], func(t *testing.T) {
			wantError(t, h.call(tc.op, tc.body), http.StatusBadRequest, tc.typ, tc.msg)
		})
	}
	h.ok("TagResource", `{`+consumer+`,"Tags":`+manyTags(50)+`}`)
}

// TestTagsByResourceNeedsStore: a backend without tags by resource (the
// fake) answers UnknownOperationException, as for resource policies.
func TestTagsByResourceNeedsStore(t *testing.T) {
	h := newHarness(t)
	for _, op := range []string{"TagResource", "UntagResource", "ListTagsForResource"} {
		if r := h.call(op, `{"ResourceARN":"`+storeARN+`s"}`); r.errType() != wire.TypeUnknownOperation {
			t.Errorf("%s: %d %s", op, r.status, r.raw)
		}
	}
}
