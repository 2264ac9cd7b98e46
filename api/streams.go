package api

import (
	"sort"
	"strconv"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// decodeInput decodes body into in, returning a SerializationException on
// failure. (It returns error, never a typed nil.)
func decodeInput(rc *reqCtx, body []byte, in any) error {
	if e := rc.codec.Decode(body, in); e != nil {
		return e
	}
	return nil
}

// Stream modes in the order AWS lists them in enum messages.
var streamModes = []string{string(storage.ModeProvisioned), string(storage.ModeOnDemand)}

type streamModeIn struct {
	StreamMode *string
}

type createStreamInput struct {
	ShardCount         wire.OptInt
	StreamName         *string
	StreamModeDetails  *streamModeIn
	Tags               map[string]string
	MaxRecordSizeInKiB wire.OptInt
	// RecordDistributionStrategy AUTO needs ON_DEMAND (distribution.go).
	RecordDistributionStrategy *string
	// WarmThroughputMiBps pre-scales an ON_DEMAND stream (storage checks
	// the mode and the account's commitment).
	WarmThroughputMiBps wire.OptInt
}

func (s *Server) createStream(rc *reqCtx, body []byte) (any, error) {
	var in createStreamInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.IntRange("shardCount", in.ShardCount, 1, 1<<31-1)
	v.ReqStr("streamName", in.StreamName, wire.PatternName, 1, 128)
	if in.StreamModeDetails != nil && v.NotNull("streamModeDetails.streamMode", in.StreamModeDetails.StreamMode != nil) {
		v.Enum("streamModeDetails.streamMode", in.StreamModeDetails.StreamMode, streamModes)
	}
	v.TagMap("tags", in.Tags, in.Tags != nil)
	v.IntRange("maxRecordSizeInKiB", in.MaxRecordSizeInKiB, storage.MinMaxRecordSizeKiB, storage.MaxMaxRecordSizeKiB)
	v.Enum("recordDistributionStrategy", in.RecordDistributionStrategy, recordDistributions)
	v.IntRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, warmIntMax)
	if err := v.Err(); err != nil {
		return nil, err
	}
	csi, err := createInput(in, s.account)
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: csi.Name}); err != nil {
		return nil, err
	}
	return nil, s.b.CreateStream(rc.ctx, csi)
}

// createInput applies CreateStream's cross-field rules and its tags'
// character checks.
func createInput(in createStreamInput, account string) (storage.CreateStreamInput, error) {
	mode := storage.ModeProvisioned
	if in.StreamModeDetails != nil {
		mode = storage.StreamMode(*in.StreamModeDetails.StreamMode)
	}
	out := storage.CreateStreamInput{Name: *in.StreamName, Mode: mode, Tags: in.Tags, MaxRecordSizeKiB: int(in.MaxRecordSizeInKiB.Val), WarmMiBps: optInt(in.WarmThroughputMiBps)}
	switch {
	case mode == storage.ModeProvisioned && !in.ShardCount.Set:
		return out, wire.InvalidArgument("ShardCount cannot be null when creating stream in PROVISIONED StreamMode")
	case mode == storage.ModeOnDemand && in.ShardCount.Set:
		return out, wire.InvalidArgument("ShardCount must not be specified when creating stream in ON_DEMAND StreamMode")
	case mode == storage.ModeOnDemand:
		out.ShardCount = storage.OnDemandShards
	default:
		out.ShardCount = int(in.ShardCount.Val)
	}
	if in.RecordDistributionStrategy != nil {
		out.Distribution = storage.RecordDistribution(*in.RecordDistributionStrategy)
	}
	// AWS documents AUTO as supported on ON_DEMAND streams only; its check's
	// place in CreateStream's order is a guess (unverified).
	if out.Distribution == storage.DistributionAuto && mode != storage.ModeOnDemand {
		return out, reasonError(wire.TypeInvalidArgument, storage.ReasonAutoProvisioned, storage.Facts{Account: account, Stream: out.Name})
	}
	if len(in.Tags) > storage.MaxTagsPerStream {
		return out, wire.InvalidArgument("Failed to create stream " + out.Name + " because a given stream cannot have more than " + strconv.Itoa(storage.MaxTagsPerStream) + " tags associated with it.")
	}
	return out, checkTags(in.Tags, out.Name, account)
}

type deleteStreamInput struct {
	wire.StreamSelector
	EnforceConsumerDeletion wire.OptBool
}

func (s *Server) deleteStream(rc *reqCtx, body []byte) (any, error) {
	var in deleteStreamInput
	name, err := s.streamRequest(rc, body, &in, nil)
	if err != nil {
		return nil, err
	}
	if err := s.b.DeleteStreamWith(rc.ctx, name, storage.DeleteOptions{EnforceConsumerDeletion: in.EnforceConsumerDeletion.Val}); err != nil {
		return nil, err
	}
	s.metrics.forgetStream(name)
	return nil, nil
}

// streamTargeted is a request that names a stream (it embeds a selector).
type streamTargeted interface {
	Selector() *wire.StreamSelector
}

// streamRequest is the common prologue of stream-targeted operations: decode,
// validate (check adds operation-specific rules before the selector's, in
// AWS's order), resolve StreamName/StreamARN, and admit.
func (s *Server) streamRequest(rc *reqCtx, body []byte, in streamTargeted, check func(*wire.Validator)) (string, error) {
	if err := decodeInput(rc, body, in); err != nil {
		return "", err
	}
	var v wire.Validator
	if check != nil {
		check(&v)
	}
	sel := in.Selector()
	sel.Validate(&v)
	if err := v.Err(); err != nil {
		return "", err
	}
	stream, err := s.resolveStream(*sel)
	if err != nil {
		return "", err
	}
	return stream, s.admit(rc, AdmissionRequest{Stream: stream})
}

type streamModeDetails struct {
	StreamMode string
}

type enhancedMetrics struct {
	ShardLevelMetrics []string
}

// enhancedMonitoring is what AWS reports of a stream's shard-level metrics:
// always one entry, whose list is empty when none is enabled.
func enhancedMonitoring(info storage.StreamInfo) []enhancedMetrics {
	l := info.ShardLevelMetrics
	if l == nil {
		l = []string{}
	}
	return []enhancedMetrics{{ShardLevelMetrics: l}}
}

type streamDescription struct {
	StreamName              string
	StreamARN               string
	StreamStatus            string
	StreamModeDetails       streamModeDetails
	Shards                  []shardOut
	HasMoreShards           bool
	RetentionPeriodHours    int
	StreamCreationTimestamp wire.EpochTime
	EnhancedMonitoring      []enhancedMetrics
	EncryptionType          string
	KeyId                   string `json:",omitempty"`
}

type describeStreamInput struct {
	wire.StreamSelector
	Limit                 wire.OptInt
	ExclusiveStartShardId *string
}

// describeStreamMax is the most shards DescribeStream returns in one call.
const describeStreamMax = 100

func (s *Server) describeStream(rc *reqCtx, body []byte) (any, error) {
	var in describeStreamInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.IntRange("limit", in.Limit, 1, 10000)
		v.Str("exclusiveStartShardId", in.ExclusiveStartShardId, wire.PatternName, 1, 128)
	})
	if err != nil {
		return nil, err
	}
	info, err := s.b.DescribeStream(rc.ctx, name)
	if err != nil {
		return nil, err
	}
	limit := describeStreamMax
	if in.Limit.Set {
		limit = min(limit, int(in.Limit.Val))
	}
	shards := info.Shards
	if in.ExclusiveStartShardId != nil {
		shards = shardsAfter(shards, *in.ExclusiveStartShardId)
	}
	more := len(shards) > limit
	if more {
		shards = shards[:limit]
	}
	d := streamDescription{
		StreamName: info.Name, StreamARN: s.arnFor(rc, info.Name), StreamStatus: string(info.Status),
		StreamModeDetails: streamModeDetails{string(info.Mode)}, Shards: shardsOut(shards), HasMoreShards: more,
		RetentionPeriodHours: info.RetentionHours, StreamCreationTimestamp: wire.EpochTime(info.Created),
		EnhancedMonitoring: enhancedMonitoring(info), EncryptionType: encryptionTypeOf(info), KeyId: info.KeyID,
	}
	return struct{ StreamDescription streamDescription }{d}, nil
}

type streamSummaryInput struct {
	wire.StreamSelector
}

type streamDescriptionSummary struct {
	StreamName              string
	StreamARN               string
	StreamStatus            string
	StreamModeDetails       streamModeDetails
	RetentionPeriodHours    int
	StreamCreationTimestamp wire.EpochTime
	EnhancedMonitoring      []enhancedMetrics
	EncryptionType          string
	KeyId                   string `json:",omitempty"`
	OpenShardCount          int
	ConsumerCount           int
	// ChannelCount is left out for a stream without channels, as in every
	// answer captured from AWS (all made before channels existed).
	ChannelCount       int `json:",omitempty"`
	MaxRecordSizeInKiB int
	// RecordDistributionStrategy is set for ON_DEMAND streams only.
	RecordDistributionStrategy string             `json:",omitempty"`
	WarmThroughput             *warmThroughputOut `json:",omitempty"`
}

func (s *Server) describeStreamSummary(rc *reqCtx, body []byte) (any, error) {
	var in streamSummaryInput
	name, err := s.streamRequest(rc, body, &in, nil)
	if err != nil {
		return nil, err
	}
	info, err := s.b.DescribeStream(rc.ctx, name)
	if err != nil {
		return nil, err
	}
	d := streamDescriptionSummary{
		StreamName: info.Name, StreamARN: s.arnFor(rc, info.Name), StreamStatus: string(info.Status),
		StreamModeDetails: streamModeDetails{string(info.Mode)}, RetentionPeriodHours: info.RetentionHours,
		StreamCreationTimestamp: wire.EpochTime(info.Created), EnhancedMonitoring: enhancedMonitoring(info),
		EncryptionType: encryptionTypeOf(info), KeyId: info.KeyID, OpenShardCount: info.OpenShardCount(), ConsumerCount: info.ConsumerCount, ChannelCount: info.ChannelCount, MaxRecordSizeInKiB: info.MaxRecordSizeKiB,
		RecordDistributionStrategy: summaryDistribution(info),
		WarmThroughput:             s.warmThroughputOf(rc.ctx, info),
	}
	return struct{ StreamDescriptionSummary streamDescriptionSummary }{d}, nil
}

type listStreamsInput struct {
	Limit                    wire.OptInt
	ExclusiveStartStreamName *string
	NextToken                *string
}

type streamSummary struct {
	StreamName              string
	StreamARN               string
	StreamStatus            string
	StreamModeDetails       streamModeDetails
	StreamCreationTimestamp wire.EpochTime
}

type listStreamsOutput struct {
	StreamNames     []string
	HasMoreStreams  bool
	NextToken       string `json:",omitempty"`
	StreamSummaries []streamSummary
}

// listStreamsMax is the most streams ListStreams returns in one call.
const listStreamsMax = 100

func (s *Server) listStreams(rc *reqCtx, body []byte) (any, error) {
	var in listStreamsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.IntRange("limit", in.Limit, 1, 10000)
	v.StreamName("exclusiveStartStreamName", in.ExclusiveStartStreamName)
	v.Str("nextToken", in.NextToken, "", 1, 1048576)
	if err := v.Err(); err != nil {
		return nil, err
	}
	after, err := s.listStreamsStart(in)
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{}); err != nil {
		return nil, err
	}
	streams, err := s.b.ListStreams(rc.ctx)
	if err != nil {
		return nil, err
	}
	limit := listStreamsMax
	if in.Limit.Set {
		limit = min(limit, int(in.Limit.Val))
	}
	return s.listStreamsPage(rc, streams, after, limit), nil
}

// listStreamsStart returns the name to list after, from ExclusiveStartStreamName
// or a NextToken (which may not be combined).
func (s *Server) listStreamsStart(in listStreamsInput) (string, error) {
	switch {
	case in.NextToken != nil && in.ExclusiveStartStreamName != nil:
		return "", wire.InvalidArgument("NextToken and ExclusiveStartStreamName cannot be provided together.")
	case in.NextToken != nil:
		return s.openListStreamsToken(*in.NextToken)
	case in.ExclusiveStartStreamName != nil:
		return *in.ExclusiveStartStreamName, nil
	}
	return "", nil
}

func (s *Server) listStreamsPage(rc *reqCtx, streams []storage.StreamInfo, after string, limit int) listStreamsOutput {
	i := sort.Search(len(streams), func(i int) bool { return streams[i].Name > after })
	streams = streams[i:]
	out := listStreamsOutput{StreamNames: []string{}, StreamSummaries: []streamSummary{}}
	if len(streams) > limit {
		streams, out.HasMoreStreams = streams[:limit], true
	}
	for _, st := range streams {
		out.StreamNames = append(out.StreamNames, st.Name)
		out.StreamSummaries = append(out.StreamSummaries, streamSummary{
			StreamName: st.Name, StreamARN: s.arnFor(rc, st.Name), StreamStatus: string(st.Status),
			StreamModeDetails: streamModeDetails{string(st.Mode)}, StreamCreationTimestamp: wire.EpochTime(st.Created),
		})
	}
	if out.HasMoreStreams {
		out.NextToken = s.keys.Seal(wire.TokenListStreams, s.now().UnixMilli(), wire.AppendStr(nil, streams[len(streams)-1].Name))
	}
	return out
}

func (s *Server) openListStreamsToken(tok string) (string, error) {
	issued, payload, err := s.keys.Open(wire.TokenListStreams, tok)
	if err != nil {
		return "", wire.InvalidArgument("Invalid NextToken.")
	}
	if wire.Expired(issued, s.now().UnixMilli()) {
		return "", wire.ClientError(wire.TypeExpiredNextToken, msgNextTokenExpired)
	}
	r := wire.NewPayloadReader(payload)
	name := r.Str()
	if !r.Done() {
		return "", wire.InvalidArgument("Invalid NextToken.")
	}
	return name, nil
}

type describeLimitsOutput struct {
	ShardLimit               int
	OpenShardCount           int
	OnDemandStreamCount      int
	OnDemandStreamCountLimit int
	// ChannelCount is left out when the account has no channels, as in
	// every answer captured from AWS. ChannelCountLimit is not answered:
	// AWS documents no default quota of channels.
	ChannelCount int `json:",omitempty"`
}

func (s *Server) describeLimits(rc *reqCtx, body []byte) (any, error) {
	var in struct{}
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{}); err != nil {
		return nil, err
	}
	streams, err := s.b.ListStreams(rc.ctx)
	if err != nil {
		return nil, err
	}
	out := describeLimitsOutput{ShardLimit: s.b.ShardLimit(), OnDemandStreamCountLimit: s.onDemandStreamLimit()}
	for _, st := range streams {
		if st.Mode == storage.ModeOnDemand {
			out.OnDemandStreamCount++
		}
		if st.Shards == nil {
			// ListStreams may leave shards out; a stream deleted meanwhile
			// simply has no open shards to count.
			if full, err := s.b.DescribeStream(rc.ctx, st.Name); err == nil {
				st = full
			}
		}
		out.OpenShardCount += st.OpenShardCount()
		out.ChannelCount += st.ChannelCount
	}
	return out, nil
}

type retentionInput struct {
	wire.StreamSelector
	RetentionPeriodHours wire.OptInt
}

func (s *Server) increaseRetention(rc *reqCtx, body []byte) (any, error) {
	return s.setRetention(rc, body, true)
}

func (s *Server) decreaseRetention(rc *reqCtx, body []byte) (any, error) {
	return s.setRetention(rc, body, false)
}

func (s *Server) setRetention(rc *reqCtx, body []byte, increase bool) (any, error) {
	var in retentionInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		v.NotNull("retentionPeriodHours", in.RetentionPeriodHours.Set)
	})
	if err != nil {
		return nil, err
	}
	return nil, s.b.SetRetention(rc.ctx, name, int(in.RetentionPeriodHours.Val), increase)
}
