package cluster

import "github.com/shardlog/shardlog/api"

var (
	_ api.Backend            = (*Node)(nil)
	_ api.TagStore           = (*Node)(nil)
	_ api.PolicyStore        = (*Node)(nil)
	_ api.MonitoringStore    = (*Node)(nil)
	_ api.Encrypter          = (*Node)(nil)
	_ api.Capacity           = (*Node)(nil)
	_ api.DistributionSource = (*Node)(nil)
)
