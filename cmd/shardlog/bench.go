package main

// `shardlog bench`: the flags of the load generator (package loadgen).

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shardlog/shardlog/loadgen"
)

func newBenchCmd() *cobra.Command {
	var o loadgen.Config
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure PutRecords, PutRecord and GetRecords throughput, and enhanced fan-out latency, against an endpoint",
		Long: `bench drives a Kinesis endpoint with the AWS SDK for Go v2 (retries off) for a bounded time
or number of records, then prints throughput, per-request latency, throttled and failed counts.
getrecords reads every shard of the stream from TRIM_HORIZON to its tip.

--op subscribe measures enhanced fan-out: one writer per open shard puts --rate records/s into it
for --duration, each record carrying its send time; --consumers registered consumers (named
shardlog-bench-N, kept for the next run) each subscribe to every shard with SubscribeToShard, and
with --poll one GetRecords loop per shard reads the same load at 5 calls/s. It reports send-to-receive
latency for both, whether every reader got every acknowledged record once and in order, and with
--server-pid the server's CPU time and peak RSS from /proc.

--server-cpu (or --server-pid) reports what each operation cost the server: CPU µs per record
acknowledged (or read), and from the server's /metrics its fdatasyncs and records per sync.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Records > 0 && !cmd.Flags().Changed("duration") {
				o.Duration = loadgen.RecordsOnlyDuration
			}
			if err := o.Check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal kills the process at once
			}()
			rep, err := loadgen.Run(ctx, o, progressWriter(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			return rep.Write(cmd.OutOrStdout(), asJSON)
		},
	}
	addBenchFlags(cmd, &o, &asJSON)
	return cmd
}

func addBenchFlags(cmd *cobra.Command, o *loadgen.Config, asJSON *bool) {
	f := cmd.Flags()
	f.StringVar(&o.Endpoint, "endpoint", "http://127.0.0.1:4567", "Kinesis endpoint URL")
	f.StringVar(&o.Region, "region", "us-east-1", "region to sign requests for")
	f.StringVar(&o.Stream, "stream", "shardlog-bench", "stream to use")
	f.IntVar(&o.Shards, "shards", 4, "shard count when the stream has to be created")
	f.StringVar(&o.Op, "op", loadgen.OpPutRecords, "operation: putrecords, putrecord, getrecords or all (in that order), or subscribe")
	f.IntVar(&o.Clients, "clients", 4, "concurrent clients")
	f.IntVar(&o.Batch, "batch", 500, "records per PutRecords request (1-500)")
	f.IntVar(&o.RecordSize, "record-size", 1024, "bytes of data per record")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each operation runs (10m cap if only --records is given)")
	f.Int64Var(&o.Records, "records", 0, "stop each operation after this many records (0: no limit)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed for record data and partition keys")
	f.IntVar(&o.Consumers, "consumers", 2, "subscribe: registered consumers, each subscribed to every shard (1-20)")
	f.IntVar(&o.Rate, "rate", 1000, "subscribe: records per second written to each shard")
	f.BoolVar(&o.Poll, "poll", true, "subscribe: also read every shard with GetRecords at 5 calls/s")
	f.IntVar(&o.ServerPID, "server-pid", 0, "read this local server process's CPU time from /proc around each operation (subscribe: also its RSS)")
	f.BoolVar(&o.ServerCPU, "server-cpu", false, "read the server's CPU time (unless --server-pid) and fdatasync count from its /metrics around each operation, and print CPU µs per record and records per sync")
	f.BoolVar(asJSON, "json", false, "print the summary as JSON")
}
