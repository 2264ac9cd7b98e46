package api

import (
	"sort"
	"strings"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

const msgInvalidTagChars = "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."

// checkTags applies AWS's character rules and the reserved aws: prefix.
func checkTags(tags map[string]string) error {
	for k, v := range tags {
		if !wire.ValidTagText(k) || !wire.ValidTagText(v) {
			return wire.InvalidArgument(msgInvalidTagChars)
		}
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
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	return nil, s.b.AddTags(rc.ctx, name, in.Tags)
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
	for _, k := range in.TagKeys {
		if !wire.ValidTagText(k) {
			return nil, wire.InvalidArgument(msgInvalidTagChars)
		}
	}
	return nil, s.b.RemoveTags(rc.ctx, name, in.TagKeys)
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
	keys := make([]string, 0, len(tags))
	for k := range tags {
		if k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := listTagsOutput{Tags: []tagOut{}}
	if len(keys) > limit {
		keys, out.HasMoreTags = keys[:limit], true
	}
	for _, k := range keys {
		out.Tags = append(out.Tags, tagOut{Key: k, Value: tags[k]})
	}
	return out
}
