package cluster

import (
	"context"
	"time"

	"github.com/shardlog/shardlog/storage"
)

// The Backend methods cluster mode does not do yet answer
// InvalidArgumentException "<what> is not supported in cluster mode yet."
// (storage.ReasonClusterUnsupported); README's Cluster section lists them.

func (n *Node) unsupported(what string) error {
	return n.fail(storage.ErrInvalidArgument, storage.ReasonClusterUnsupported, storage.Facts{Given: what})
}

func (n *Node) SetRetention(context.Context, string, int, bool) error {
	return n.unsupported("Changing the retention period")
}

func (n *Node) AddTags(context.Context, string, map[string]string, storage.TagCheck) error {
	return n.unsupported("AddTagsToStream")
}

func (n *Node) RemoveTags(context.Context, string, []string, storage.TagCheck) error {
	return n.unsupported("RemoveTagsFromStream")
}

func (n *Node) SetRecordDistribution(context.Context, string, storage.RecordDistribution) error {
	return n.unsupported("UpdateStreamRecordDistributionStrategy")
}

func (n *Node) UpdateMaxRecordSize(context.Context, string, int) error {
	return n.unsupported("UpdateMaxRecordSize")
}

func (n *Node) RegisterConsumer(context.Context, string, string, map[string]string) (storage.ConsumerInfo, error) {
	return storage.ConsumerInfo{}, n.unsupported("Enhanced fan-out")
}

func (n *Node) DescribeConsumer(context.Context, string, string) (storage.ConsumerInfo, error) {
	return storage.ConsumerInfo{}, n.unsupported("Enhanced fan-out")
}

func (n *Node) ListConsumers(context.Context, string) ([]storage.ConsumerInfo, error) {
	return nil, n.unsupported("Enhanced fan-out")
}

func (n *Node) DeregisterConsumer(context.Context, string, string) error {
	return n.unsupported("Enhanced fan-out")
}

func (n *Node) ActiveConsumer(context.Context, string, string, time.Time) (storage.ConsumerInfo, <-chan struct{}, error) {
	return storage.ConsumerInfo{}, nil, n.unsupported("Enhanced fan-out")
}

func (n *Node) Subscribe(context.Context, storage.SubscribeInput, <-chan struct{}) (*storage.Subscription, error) {
	return nil, n.unsupported("Enhanced fan-out")
}
