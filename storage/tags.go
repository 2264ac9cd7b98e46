package storage

import "context"

// Tags by resource (TagResource, UntagResource, ListTagsForResource): a
// PolicyTarget names a stream or one of its consumers, as for resource
// policies. A stream's tags are the ones AddTagsToStream keeps; a
// consumer's live in its consumer record (RegisterStreamConsumer's Tags
// included), so they go with it.

// ResourceTags returns a copy of the target's tags. It fails with
// ErrStreamNotFound or ErrConsumerNotFound.
func (s *Store) ResourceTags(ctx context.Context, t PolicyTarget) (map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(t.Stream)
	if err != nil {
		return nil, err
	}
	if t.Consumer == "" {
		return copyTags(st.meta.Tags), nil
	}
	i, err := s.policyConsumer(st.meta, t)
	if err != nil {
		return nil, err
	}
	return copyTags(st.meta.Consumers[i].Tags), nil
}

// TagResource adds or overwrites the target's tags, as AddTags does for a
// stream. For a consumer the order is the same: the stream and the consumer
// are looked up, then check runs, then the stream must be ACTIVE, then the
// 50-tag limit applies.
func (s *Store) TagResource(ctx context.Context, t PolicyTarget, tags map[string]string, check TagCheck) error {
	if t.Consumer == "" {
		return s.AddTags(ctx, t.Stream, tags, check)
	}
	return s.updateMetaWith(t.Stream, s.consumerCheck(t, check), func(m *streamMeta) error {
		i, err := s.policyConsumer(m, t)
		if err != nil {
			return err
		}
		// A new map: clones of the record share the stored one.
		merged, err := ConsumerTagsAdded(s.opts.AccountID, t.Stream, t.Consumer, m.Consumers[i].Tags, tags)
		if err != nil {
			return err
		}
		m.Consumers[i].Tags = merged
		return nil
	})
}

// UntagResource removes the target's tags with these keys; absent keys are
// ignored. The checks run in TagResource's order.
func (s *Store) UntagResource(ctx context.Context, t PolicyTarget, keys []string, check TagCheck) error {
	if t.Consumer == "" {
		return s.RemoveTags(ctx, t.Stream, keys, check)
	}
	return s.updateMetaWith(t.Stream, s.consumerCheck(t, check), func(m *streamMeta) error {
		i, err := s.policyConsumer(m, t)
		if err != nil {
			return err
		}
		m.Consumers[i].Tags = TagsRemoved(m.Consumers[i].Tags, keys)
		return nil
	})
}

// consumerCheck looks the target consumer up, then runs check (if any): a
// missing consumer is reported before bad characters, as a missing stream
// is.
func (s *Store) consumerCheck(t PolicyTarget, check TagCheck) func(m *streamMeta) error {
	return func(m *streamMeta) error {
		if _, err := s.policyConsumer(m, t); err != nil {
			return err
		}
		if check == nil {
			return nil
		}
		return check()
	}
}
