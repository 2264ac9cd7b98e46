package main

// This file is the only one in the command that touches the storage engine.

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shardlog/shardlog/api"
	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/datadir"
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

	defaultOnDemandStreamLimit = storage.DefaultOnDemandStreamLimit
	defaultScaleInterval       = storage.DefaultScaleInterval
	defaultScaleWindow         = storage.DefaultScaleWindow
	defaultScaleSplitAt        = storage.DefaultScaleSplitAt
	defaultScaleMergeBelow     = storage.DefaultScaleMergeBelow
	defaultScaleMergeAfter     = storage.DefaultScaleMergeAfter
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

		ConsumerDelay:  o.consumerDelay,
		ChannelDelay:   o.channels.delay,
		ChannelAnyMode: o.channels.anyMode,
		Sync:           o.sync,
		SyncPerShard:   !o.sharedSync,
		Logger:         log.Named("storage"),

		ScalingCallsPerDay: o.scalingPerDay,

		OnDemandStreamLimit: o.onDemand.streamLimit,
		OnDemand:            o.onDemand.scaler(),

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
	m := channel.Start(channel.StoreSource(store), channel.Options{Dest: channel.Dir(channelDir(o)), FlushEvery: o.channels.flushEvery, Logger: log.Named("channel")})
	return api.StoreBackend(store), closers{m, store}, nil
}

// channelDir is where channels deliver (--channel-dir). In cluster mode
// the delivering node (the metadata leader) writes to its own.
func channelDir(o serveOptions) string {
	if o.channels.dir != "" {
		return o.channels.dir
	}
	return datadir.ChannelsOutPath(o.dataDir)
}

// channelOptions are the serve flags of channel delivery.
type channelOptions struct {
	delay      time.Duration
	dir        string
	flushEvery time.Duration
	anyMode    bool
}

// closers closes each in turn (channel delivery stops before the store).
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// scaler is the on-demand flags as storage takes them; an interval of 0
// turns the scaler off.
func (o onDemandOptions) scaler() storage.ScalerOptions {
	interval := o.interval
	if interval == 0 {
		interval = -1
	}
	return storage.ScalerOptions{Interval: interval, Window: o.window, SplitAt: o.splitAt, MergeBelow: o.mergeBelow, MergeAfter: o.mergeAfter}
}
