package api

import (
	"testing"
	"time"

	"github.com/shardlog/shardlog/api/wire"
)

func shardIDs(r response) []string {
	var ids []string
	for _, s := range r.body["Shards"].([]any) {
		ids = append(ids, str(s.(map[string]any)["ShardId"]))
	}
	return ids
}

func sameIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != "shardId-00000000000"+want[i] {
			return false
		}
	}
	return true
}

func TestListShards(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 3)
	h.advance(10 * time.Second)
	h.fake.closeShard("s", 1) // adds shard 3, child of 1

	tests := []struct {
		body string
		want []string
	}{
		{`{"StreamName":"s"}`, []string{"0", "1", "2", "3"}},
		{`{"StreamName":"s","ExclusiveStartShardId":"shardId-000000000001"}`, []string{"2", "3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_LATEST"}}`, []string{"0", "2", "3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_TRIM_HORIZON"}}`, []string{"0", "1", "2"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"FROM_TRIM_HORIZON"}}`, []string{"0", "1", "2", "3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"AFTER_SHARD_ID","ShardId":"2"}}`, []string{"3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_TIMESTAMP","Timestamp":1795694405}}`, []string{"0", "1", "2"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_TIMESTAMP","Timestamp":1795694412}}`, []string{"0", "2", "3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"FROM_TIMESTAMP","Timestamp":1795694412}}`, []string{"0", "2", "3"}},
		{`{"StreamName":"s","ShardFilter":{"Type":"FROM_TIMESTAMP","Timestamp":1795694405}}`, []string{"0", "1", "2", "3"}},
		{`{"StreamName":"s","StreamCreationTimestamp":1795694400.000}`, []string{"0", "1", "2", "3"}},
	}
	for _, tc := range tests {
		if got := shardIDs(h.ok("ListShards", tc.body)); !sameIDs(got, tc.want...) {
			t.Errorf("%s: got %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestListShardsPagination(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 5)
	r := h.ok("ListShards", `{"StreamName":"s","MaxResults":2,"ShardFilter":{"Type":"AT_LATEST"}}`)
	var all []string
	for {
		all = append(all, shardIDs(r)...)
		tok := str(r.body["NextToken"])
		if tok == "" {
			break
		}
		r = h.ok("ListShards", `{"NextToken":"`+tok+`","MaxResults":2}`)
	}
	if !sameIDs(all, "0", "1", "2", "3", "4") {
		t.Fatalf("paged: %v", all)
	}
	r = h.ok("ListShards", `{"StreamName":"s","MaxResults":4}`)
	tok := str(r.body["NextToken"])
	wantError(t, h.call("ListShards", `{"NextToken":"`+tok+`","StreamName":"s"}`), 400, wire.TypeInvalidArgument, "NextToken and StreamName cannot be provided together.")
	wantError(t, h.call("ListShards", `{}`), 400, wire.TypeInvalidArgument, "Either NextToken or StreamName should be provided.")
	wantError(t, h.call("ListShards", `{"NextToken":"AAAA"}`), 400, wire.TypeInvalidArgument, "Invalid NextToken.")

	// A token for a stream that was recreated finds nothing.
	h.ok("DeleteStream", `{"StreamName":"s"}`)
	h.advance(time.Second)
	h.createStream("s", 5)
	wantError(t, h.call("ListShards", `{"NextToken":"`+tok+`"}`), 400, wire.TypeResourceNotFound, "")

	r = h.ok("ListShards", `{"StreamName":"s","MaxResults":4}`)
	tok = str(r.body["NextToken"])
	h.advance(301 * time.Second)
	wantError(t, h.call("ListShards", `{"NextToken":"`+tok+`"}`), 400, wire.TypeExpiredNextToken, "")
}

func TestListShardsErrors(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	tests := []struct{ body, typ string }{
		{`{"StreamName":"s","ShardFilter":{"Type":"AFTER_SHARD_ID"}}`, wire.TypeInvalidArgument},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_TIMESTAMP"}}`, wire.TypeInvalidArgument},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_LATEST","ShardId":"1"}}`, wire.TypeInvalidArgument},
		{`{"StreamName":"s","ShardFilter":{"Type":"AT_LATEST","Timestamp":5}}`, wire.TypeInvalidArgument},
		{`{"StreamName":"s","StreamCreationTimestamp":5}`, wire.TypeResourceNotFound},
		{`{"StreamName":"nope"}`, wire.TypeResourceNotFound},
	}
	for _, tc := range tests {
		wantError(t, h.call("ListShards", tc.body), 400, tc.typ, "")
	}
}

func TestTags(t *testing.T) {
	h := newHarness(t)
	h.createStream("s", 1)
	h.ok("AddTagsToStream", `{"StreamName":"s","Tags":{"b":"2","a":"1","c":""}}`)
	r := h.ok("ListTagsForStream", `{"StreamName":"s","Limit":2}`)
	if r.raw != `{"Tags":[{"Key":"a","Value":"1"},{"Key":"b","Value":"2"}],"HasMoreTags":true}` {
		t.Fatalf("list: %s", r.raw)
	}
	r = h.ok("ListTagsForStream", `{"StreamName":"s","ExclusiveStartTagKey":"b"}`)
	if r.raw != `{"Tags":[{"Key":"c","Value":""}],"HasMoreTags":false}` {
		t.Fatalf("list after b: %s", r.raw)
	}
	h.ok("RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a","zz"]}`)
	if _, ok := h.fake.streams["s"].info.Tags["a"]; ok {
		t.Fatal("tag a not removed")
	}
	wantError(t, h.call("AddTagsToStream", `{"StreamName":"s","Tags":{"k":"v#"}}`), 400, wire.TypeInvalidArgument, msgInvalidTagChars)
	wantError(t, h.call("AddTagsToStream", `{"StreamName":"s","Tags":{"aws:x":"v"}}`), 400, wire.TypeInvalidArgument, "")
	wantError(t, h.call("AddTagsToStream", `{"StreamName":"s"}`), 400, wire.TypeValidation,
		"1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null")
	h.ok("AddTagsToStream", `{"StreamName":"s","Tags":{"Ünïcødé 1":"a/b=c+d-e_f@g:h"}}`)
}

// TestTagCharacters: AWS's two character checks (white space is Unicode
// category Z; then no '%'), after the stream lookup.
func TestTagCharacters(t *testing.T) {
	const acct = "123456789012"
	addPct := msgTagPercent("add tags to", "s", acct)
	tests := []struct {
		op, body string
		typ, msg string // "" for success
	}{
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"k\t":"v"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"k":"a\nb"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"k":"a\rb"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"a%":"x","b\t":"y"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"k%":"v"}}`, wire.TypeInvalidArgument, addPct},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"k":"50%"}}`, wire.TypeInvalidArgument, addPct},
		{"AddTagsToStream", `{"StreamName":"nope","Tags":{";":"v"}}`, wire.TypeResourceNotFound, "Stream nope under account " + acct + " not found."},
		{"AddTagsToStream", `{"StreamName":"s","Tags":{"ü0 _.":"ü0 _./=+-@","/=+-@":"","a\u00a0b":"c\u2003d"}}`, "", ""},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a","b\t"]}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a%"]}`, wire.TypeInvalidArgument, msgTagPercent("remove tags from", "s", acct)},
		{"RemoveTagsFromStream", `{"StreamName":"nope","TagKeys":[";"]}`, wire.TypeResourceNotFound, "Stream nope under account " + acct + " not found."},
		{"RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a\u00a0b","x y"]}`, "", ""},
		{"CreateStream", `{"StreamName":"c","ShardCount":1,"Tags":{"k\n":"v"}}`, wire.TypeInvalidArgument, msgInvalidTagChars},
		{"CreateStream", `{"StreamName":"c","ShardCount":1,"Tags":{"k":"%"}}`, wire.TypeInvalidArgument, msgTagPercent("add tags to", "c", acct)},
	}
	h := newHarness(t)
	h.createStream("s", 1)
	for _, tc := range tests {
		if tc.typ == "" {
			h.ok(tc.op, tc.body)
			continue
		}
		wantError(t, h.call(tc.op, tc.body), 400, tc.typ, tc.msg)
	}
	if tags := h.fake.streams["s"].info.Tags; len(tags) != 2 || tags["ü0 _."] != "ü0 _./=+-@" || tags["/=+-@"] != "" {
		t.Fatalf("tags %q", tags)
	}
}
