package api

import (
	"sort"
	"strings"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

const msgInvalidTagChars = "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."

// msgTagPercent is AWS's second character check's text; action is "add tags
// to" or "remove tags from".
func msgTagPercent(action, stream, account string) string {
	return "Failed to " + action + " stream " + stream + " under account " + account +
		" because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
}

// checkTagChars runs AWS's two character checks over every key and value
// of a request, each over all of them before the next: (1) only the
// characters wire.ValidTagText allows, white space meaning Unicode category
// Z (tab, newline and CR fail); (2) no '%', although (1) allows it. Both are
// captured from AWS responses; (2) is unverified against the current
// service, whose API reference still lists '%' as valid.
func checkTagChars(texts []string, action, stream, account string) error {
	for _, t := range texts {
		if !wire.ValidTagText(t) {
			return wire.InvalidArgument(msgInvalidTagChars)
		}
	}
	for _, t := range texts {
		if strings.ContainsRune(t, '%') {
			return wire.InvalidArgument(msgTagPercent(action, stream, account))
		}
	}
	return nil
}

// checkTags applies AWS's character rules, then the reserved aws: prefix, to
// tags being added. CreateStream's tags get the same checks and, having no
// capture of their own, AddTagsToStream's wording.
func checkTags(tags map[string]string, stream, account string) error {
	texts := make([]string, 0, 2*len(tags))
	for k, v := range tags {
		texts = append(texts, k, v)
	}
	if err := checkTagChars(texts, "add tags to", stream, account); err != nil {
		return err
	}
	for k := range tags {
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return wire.InvalidArgument("Tag key " + k + " is invalid: the aws: prefix is reserved for AWS use.")
		}
	}
	return nil
}

type addTagsInput struct {
	wire.StreamSelector
	Tags map[string]string
}

func (s *Server) addTags(rc *reqCtx, body []byte) (any, error) {
	var in addTagsInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("tags", in.Tags != nil) {
			v.TagMap("tags", in.Tags, true)
		}
	})
	if err != nil {
		return nil, err
	}
	// Storage runs the check once the stream is found: AWS answers a
	// missing stream before bad characters (AWS's order for RemoveTags; the
	// same is assumed here, and the 50-tag limit comes last).
	return nil, s.b.AddTags(rc.ctx, name, in.Tags, func() error { return checkTags(in.Tags, name, s.account) })
}

type removeTagsInput struct {
	wire.StreamSelector
	TagKeys []string
}

func (s *Server) removeTags(rc *reqCtx, body []byte) (any, error) {
	var in removeTagsInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("tagKeys", in.TagKeys != nil) {
			checkTagKeyList(v, in.TagKeys)
		}
	})
	if err != nil {
		return nil, err
	}
	// Storage runs the check once the stream is found: AWS answers a
	// missing stream before bad characters (captured from AWS responses;
	// unverified against the current service).
	return nil, s.b.RemoveTags(rc.ctx, name, in.TagKeys, func() error {
		return checkTagChars(in.TagKeys, "remove tags from", name, s.account)
	})
}

// checkTagKeyList checks a TagKeyList: 1..50 keys of 1..128 characters,
// the keys' lengths reported once, at tagKeys.
func checkTagKeyList(v *wire.Validator, keys []string) {
	v.StrList("tagKeys", keys, 1, 50, 1, 128)
}

type listTagsInput struct {
	wire.StreamSelector
	ExclusiveStartTagKey *string
	Limit                wire.OptInt
}

type tagOut struct {
	Key   string
	Value string
}

type listTagsOutput struct {
	Tags        []tagOut
	HasMoreTags bool
}

func (s *Server) listTags(rc *reqCtx, body []byte) (any, error) {
	var in listTagsInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.IntRange("limit", in.Limit, 1, 50)
		v.Str("exclusiveStartTagKey", in.ExclusiveStartTagKey, "", 1, 128)
	})
	if err != nil {
		return nil, err
	}
	info, err := s.b.DescribeStream(rc.ctx, name)
	if err != nil {
		return nil, err
	}
	limit := storage.MaxTagsPerStream
	if in.Limit.Set {
		limit = int(in.Limit.Val)
	}
	after := ""
	if in.ExclusiveStartTagKey != nil {
		after = *in.ExclusiveStartTagKey
	}
	return tagPage(info.Tags, after, limit), nil
}

// tagPage lists tags in key order after the exclusive start key.
func tagPage(tags map[string]string, after string, limit int) listTagsOutput {
	out := listTagsOutput{Tags: sortedTags(tags, after)}
	if len(out.Tags) > limit {
		out.Tags, out.HasMoreTags = out.Tags[:limit], true
	}
	return out
}

// sortedTags lists the tags whose keys sort after after, in key order
// (never nil: AWS answers an empty list).
func sortedTags(tags map[string]string, after string) []tagOut {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		if k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]tagOut, 0, len(keys))
	for _, k := range keys {
		out = append(out, tagOut{Key: k, Value: tags[k]})
	}
	return out
}
