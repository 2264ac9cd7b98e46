package api

import (
	"context"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// TagResource, UntagResource and ListTagsForResource: tags by ResourceARN,
// a stream's or a consumer's (resolved as for resource policies). A stream's
// tags are the ones AddTagsToStream and ListTagsForStream see; a consumer's
// are the ones RegisterStreamConsumer stored. AWS's texts for these
// operations were never captured, so they answer as the stream tag
// operations do, checks, order and wording included (a consumer's character
// errors name its stream, as RegisterStreamConsumer's do); only the
// consumer's 50-tag limit has a text of its own (unverified).

// TagStore is the part of a Backend that keeps tags by resource;
// *storage.Store has it. Backends without it (test fakes) answer these
// operations UnknownOperationException.
type TagStore interface {
	ResourceTags(ctx context.Context, t storage.PolicyTarget) (map[string]string, error)
	TagResource(ctx context.Context, t storage.PolicyTarget, tags map[string]string, check storage.TagCheck) error
	UntagResource(ctx context.Context, t storage.PolicyTarget, keys []string, check storage.TagCheck) error
}

var _ TagStore = (*storage.Store)(nil)

func (s *Server) tagStore() (TagStore, error) {
	ts, ok := s.b.(TagStore)
	if !ok {
		return nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	return ts, nil
}

type tagResourceInput struct {
	ResourceARN *string
	Tags        map[string]string
	StreamId    *string // reserved by AWS; accepted and ignored
}

func (in *tagResourceInput) resourceARN() *string { return in.ResourceARN }

// tagResource checks, in the model's member order, Tags then ResourceARN.
func (s *Server) tagResource(rc *reqCtx, body []byte) (any, error) {
	ts, err := s.tagStore()
	if err != nil {
		return nil, err
	}
	var in tagResourceInput
	target, err := s.resourceRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("tags", in.Tags != nil) {
			v.TagMap("tags", in.Tags, true)
		}
		checkResourceARN(v, in.ResourceARN)
	})
	if err != nil {
		return nil, err
	}
	return nil, ts.TagResource(rc.ctx, *target, in.Tags, func() error { return checkTags(in.Tags, target.Stream, s.account) })
}

type untagResourceInput struct {
	ResourceARN *string
	TagKeys     []string
	StreamId    *string // reserved by AWS; accepted and ignored
}

func (in *untagResourceInput) resourceARN() *string { return in.ResourceARN }

func (s *Server) untagResource(rc *reqCtx, body []byte) (any, error) {
	ts, err := s.tagStore()
	if err != nil {
		return nil, err
	}
	var in untagResourceInput
	target, err := s.resourceRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("tagKeys", in.TagKeys != nil) {
			checkTagKeyList(v, in.TagKeys)
		}
		checkResourceARN(v, in.ResourceARN)
	})
	if err != nil {
		return nil, err
	}
	return nil, ts.UntagResource(rc.ctx, *target, in.TagKeys, func() error {
		return checkTagChars(in.TagKeys, "remove tags from", target.Stream, s.account)
	})
}

type listTagsForResourceInput struct {
	ResourceARN *string
	StreamId    *string // reserved by AWS; accepted and ignored
}

func (in *listTagsForResourceInput) resourceARN() *string { return in.ResourceARN }

// listTagsForResource answers every tag at once, in key order: the model
// has no pagination for it, and a resource has at most 50 tags.
func (s *Server) listTagsForResource(rc *reqCtx, body []byte) (any, error) {
	ts, err := s.tagStore()
	if err != nil {
		return nil, err
	}
	var in listTagsForResourceInput
	target, err := s.resourceRequest(rc, body, &in, func(v *wire.Validator) { checkResourceARN(v, in.ResourceARN) })
	if err != nil {
		return nil, err
	}
	tags, err := ts.ResourceTags(rc.ctx, *target)
	if err != nil {
		return nil, err
	}
	return struct{ Tags []tagOut }{sortedTags(tags, "")}, nil
}
