package cluster

import "github.com/shardlog/shardlog/api"

var _ api.Backend = (*Node)(nil)
