package cluster

import (
	"context"

	"github.com/shardlog/shardlog/storage"
)

// The Backend methods cluster mode does not do yet answer
// InvalidArgumentException "<what> is not supported in cluster mode yet."
// (storage.ReasonClusterUnsupported); README's Cluster section lists them.

func (n *Node) unsupported(what string) error {
	return n.fail(storage.ErrInvalidArgument, storage.ReasonClusterUnsupported, storage.Facts{Given: what})
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
