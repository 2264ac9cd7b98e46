package api

import (
	"context"
	"errors"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// The fake's consumers are ACTIVE at once and gone at once.

func (f *fakeBackend) consumerErr(kind error, r storage.Reason, stream, name string) error {
	return &storage.Error{Kind: kind, Reason: r, Facts: storage.Facts{Account: f.account, Stream: stream, Consumer: name}}
}

func (f *fakeBackend) RegisterConsumer(ctx context.Context, stream, name string, tags map[string]string) (storage.ConsumerInfo, error) {
	if err := f.enter(); err != nil {
		return storage.ConsumerInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return storage.ConsumerInfo{}, err
	}
	for _, c := range st.consumers {
		if c.Name == name {
			return storage.ConsumerInfo{}, f.consumerErr(storage.ErrResourceInUse, storage.ReasonConsumerExists, stream, name)
		}
	}
	c := storage.ConsumerInfo{Name: name, Stream: stream, Status: storage.ConsumerActive, Created: f.clock().Truncate(1e6), Tags: tags}
	st.consumers = append(st.consumers, c)
	return c, nil
}

func (f *fakeBackend) DescribeConsumer(ctx context.Context, stream, name string) (storage.ConsumerInfo, error) {
	if err := f.enter(); err != nil {
		return storage.ConsumerInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return storage.ConsumerInfo{}, err
	}
	for _, c := range st.consumers {
		if c.Name == name {
			return c, nil
		}
	}
	return storage.ConsumerInfo{}, f.consumerErr(storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound, stream, name)
}

func (f *fakeBackend) ListConsumers(ctx context.Context, stream string) ([]storage.ConsumerInfo, error) {
	if err := f.enter(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return nil, err
	}
	return append([]storage.ConsumerInfo(nil), st.consumers...), nil
}

func (f *fakeBackend) DeregisterConsumer(ctx context.Context, stream, name string) error {
	if err := f.enter(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(stream)
	if err != nil {
		return err
	}
	for i, c := range st.consumers {
		if c.Name == name {
			st.consumers = append(st.consumers[:i:i], st.consumers[i+1:]...)
			return nil
		}
	}
	return f.consumerErr(storage.ErrConsumerNotFound, storage.ReasonConsumerNotFound, stream, name)
}

func (f *fakeBackend) ActiveConsumer(ctx context.Context, stream, name string, created time.Time) (storage.ConsumerInfo, <-chan struct{}, error) {
	return storage.ConsumerInfo{}, nil, errors.New("fake backend: no SubscribeToShard")
}

func (f *fakeBackend) Subscribe(ctx context.Context, in storage.SubscribeInput, gone <-chan struct{}) (Subscription, error) {
	return nil, errors.New("fake backend: no SubscribeToShard")
}
