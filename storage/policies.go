package storage

import "context"

// Resource-based policies (PutResourcePolicy and friends). A stream's policy
// lives in its meta.db record and a consumer's in its consumer record, so a
// policy is deleted with its stream or consumer and a stream or consumer
// created again under the name starts without one. Storage keeps the text as
// given; the api parses and validates it.

// PolicyTarget names a stream (Consumer "") or one of its consumers: the
// resource of a resource policy, or of tags (tags.go).
// ConsumerSecs, when not negative, is the creation second a consumer ARN
// ends with: a consumer of that name created at another second is not the
// one named.
type PolicyTarget struct {
	Stream       string
	Consumer     string
	ConsumerSecs int64
}

// ResourcePolicy returns the target's policy, "" when it has none. It fails
// with ErrStreamNotFound or ErrConsumerNotFound.
func (s *Store) ResourcePolicy(ctx context.Context, t PolicyTarget) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, err := s.lookupLocked(t.Stream)
	if err != nil {
		return "", err
	}
	if t.Consumer == "" {
		return st.meta.Policy, nil
	}
	i, err := s.policyConsumer(st.meta, t)
	if err != nil {
		return "", err
	}
	return st.meta.Consumers[i].Policy, nil
}

// SetResourcePolicy stores the target's policy; "" deletes it. The stream
// must be ACTIVE (ErrResourceInUse otherwise), as for tags.
func (s *Store) SetResourcePolicy(ctx context.Context, t PolicyTarget, policy string) error {
	return s.updateMeta(t.Stream, nil, func(m *streamMeta) error {
		if t.Consumer == "" {
			m.Policy = policy
			return nil
		}
		i, err := s.policyConsumer(m, t)
		if err != nil {
			return err
		}
		m.Consumers[i].Policy = policy // m is a clone: its Consumers slice is its own
		return nil
	})
}

func (s *Store) policyConsumer(m *streamMeta, t PolicyTarget) (int, error) {
	return TargetConsumer(s.opts.AccountID, m.Consumers, t)
}
