package cluster

import (
	"github.com/shardlog/shardlog/storage"
)

// What cluster mode does not do yet (AUTO record distribution) answers
// InvalidArgumentException
// "<what> is not supported in cluster mode yet."
// (storage.ReasonClusterUnsupported); README's Cluster section lists it.

func (n *Node) unsupported(what string) error {
	return n.fail(storage.ErrInvalidArgument, storage.ReasonClusterUnsupported, storage.Facts{Given: what})
}
