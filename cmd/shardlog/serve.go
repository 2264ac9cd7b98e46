package main

// This file is the only one in the command that touches the storage engine.

import (
	"context"
	"io"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// The storage engine's defaults, which the serve flags show.
const (
	defaultAccountID   = storage.DefaultAccountID
	defaultShardLimit  = storage.DefaultShardLimit
	defaultSegmentSize = storage.DefaultSegmentSize
	defaultSegmentAge  = storage.DefaultSegmentAge
	defaultCacheWindow = storage.DefaultCacheWindow

	defaultScalingPerDay = storage.DefaultScalingCallsPerDay
)

// openStore opens (or creates) the data directory. The returned Closer syncs
// and closes the store; runServe calls it after the last request finished.
func openStore(ctx context.Context, o serveOptions, log hclog.Logger) (api.Backend, io.Closer, error) {
	store, err := storage.Open(ctx, storage.Options{
		Dir:         o.dataDir,
		FS:          vfs.OS{},
		AccountID:   o.accountID,
		ShardLimit:  o.shardLimit,
		CreateDelay: o.createDelay,
		DeleteDelay: o.deleteDelay,
		UpdateDelay: o.updateDelay,

		ConsumerDelay: o.consumerDelay,
		Sync:          o.sync,
		Logger:        log.Named("storage"),

		ScalingCallsPerDay: o.scalingPerDay,

		SegmentSize: o.segmentSize,
		SegmentAge:  o.segmentAge,
		CacheWindow: o.cacheWindow,

		RetentionEvery: o.retentionEvery,
		Now:            o.now,

		Throttle:           o.throttle,
		ThrottleMultiplier: o.throttleMultiplier,
		InjectThrottleRate: o.injectThrottleRate,
		Observer:           o.engine,
		Keyring:            o.keys,
	})
	if err != nil {
		return nil, nil, err
	}
	return store, store, nil
}
