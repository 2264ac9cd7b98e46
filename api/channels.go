package api

import (
	"context"
	"strconv"
	"strings"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/channel"
	"github.com/shardlog/shardlog/storage"
)

// The channel operations: CreateChannel, DescribeChannel, ListChannels,
// UpdateChannel and DeleteChannel. A channel delivers a stream's records to
// an S3 bucket (package channel does the delivery); it is named by its ARN,
// arn:aws:kinesis:REGION:ACCOUNT:channel/NAME. Model constraints other than
// the ones AWS documents (ChannelARN's and StreamARN's patterns) were never
// captured; shardlog checks the ones below, in AWS's message format, and
// words its InvalidArgumentException texts in AWS's style (unverified).

// ChannelStore is the part of a Backend that keeps channels; *storage.Store
// has it. Backends without it answer the channel operations
// UnknownOperationException.
type ChannelStore interface {
	CreateChannel(ctx context.Context, in storage.CreateChannelInput) (storage.ChannelInfo, error)
	DescribeChannel(ctx context.Context, name string) (storage.ChannelInfo, error)
	Channels(ctx context.Context) ([]storage.ChannelInfo, error)
	UpdateChannel(ctx context.Context, name string, u storage.ChannelUpdate) (storage.ChannelInfo, error)
	DeleteChannel(ctx context.Context, name string) error
}

var _ ChannelStore = (*storage.Store)(nil)

func (s *Server) channels() (ChannelStore, error) {
	cs, ok := s.b.(ChannelStore)
	if !ok {
		return nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	return cs, nil
}

// Enum values in the order the SDK's model lists them.
var (
	recordFormats          = []string{"GSR_JSON", "JSON", "STRING", "BYTE_ARRAY"}
	compressionTypes       = []string{"NONE", "GZIP", "ZSTD"}
	storageClasses         = []string{"STANDARD", "INTELLIGENT_TIERING", "GLACIER_IR"}
	channelEncryptionTypes = []string{"KMS"}
	freshnessMin           = int64(300) // AWS: 300 to 900 seconds, default 300
	freshnessMax           = int64(900)
	freshnessDefault       = 300
	maxChannelTags         = 50
	listChannelsLimit      = 100
)

type recordConfiguration struct {
	RecordFormatType *string
	GSRSchemaARN     *string `json:",omitempty"`
}

type channelStreamConfig struct {
	RecordConfiguration *recordConfiguration
	StreamARN           *string
}

type s3StorageConfig struct {
	BucketARN           *string
	CompressionType     *string
	ExpectedBucketOwner *string
	OutputKeyTemplate   *string `json:",omitempty"`
	StorageClass        *string `json:",omitempty"`
}

type dlqConfig struct {
	BucketARN           *string
	ExpectedBucketOwner *string
	ErrorOutputPrefix   *string `json:",omitempty"`
}

type s3DestinationConfig struct {
	StorageConfiguration           *s3StorageConfig
	DataFreshnessInSeconds         wire.OptInt
	DeadLetterQueueS3Configuration *dlqConfig
}

type encryptionConfig struct {
	EncryptionType *string
	KeyId          *string
}

type cloudWatchLogs struct {
	Enabled       wire.OptBool
	LogGroupName  *string
	LogStreamName *string
}

type loggingConfig struct {
	CloudWatchLogs *cloudWatchLogs
}

type createChannelInput struct {
	ChannelName                      *string
	ServiceExecutionRoleARN          *string
	StreamConfigurationList          []channelStreamConfig
	EncryptionConfiguration          *encryptionConfig
	LoggingConfiguration             *loggingConfig
	S3DestinationConfiguration       *s3DestinationConfig
	S3TablesDestinationConfiguration *struct{}
	Tags                             map[string]string
}

func (in *createChannelInput) validate(v *wire.Validator) {
	v.ReqStr("channelName", in.ChannelName, wire.PatternName, 1, 128)
	v.ReqStr("serviceExecutionRoleARN", in.ServiceExecutionRoleARN, wire.PatternRoleARN, 1, 2048)
	if v.NotNull("streamConfigurationList", in.StreamConfigurationList != nil) {
		v.Length(wire.Quoted("["+strings.Repeat("ChannelStreamConfiguration, ", max(len(in.StreamConfigurationList)-1, 0))+"ChannelStreamConfiguration]"),
			"streamConfigurationList", len(in.StreamConfigurationList), 1, 1)
		for i, sc := range in.StreamConfigurationList {
			p := "streamConfigurationList." + strconv.Itoa(i+1) + ".member."
			if v.NotNull(p+"recordConfiguration", sc.RecordConfiguration != nil) {
				v.NotNull(p+"recordConfiguration.recordFormatType", sc.RecordConfiguration.RecordFormatType != nil)
				v.Enum(p+"recordConfiguration.recordFormatType", sc.RecordConfiguration.RecordFormatType, recordFormats)
			}
			v.ReqStr(p+"streamARN", sc.StreamARN, wire.PatternARN, 1, 2048)
		}
	}
	if e := in.EncryptionConfiguration; e != nil {
		v.NotNull("encryptionConfiguration.encryptionType", e.EncryptionType != nil)
		v.Enum("encryptionConfiguration.encryptionType", e.EncryptionType, channelEncryptionTypes)
		v.ReqStr("encryptionConfiguration.keyId", e.KeyId, "", 1, 2048)
	}
	if l := in.LoggingConfiguration; l != nil && v.NotNull("loggingConfiguration.cloudWatchLogs", l.CloudWatchLogs != nil) {
		validateLogs(v, "loggingConfiguration.cloudWatchLogs", l.CloudWatchLogs)
	}
	if d := in.S3DestinationConfiguration; d != nil {
		validateS3Destination(v, d)
	}
	v.TagMap("tags", in.Tags, in.Tags != nil)
}

func validateLogs(v *wire.Validator, p string, c *cloudWatchLogs) {
	v.NotNull(p+".enabled", c.Enabled.Set)
	v.Str(p+".logGroupName", c.LogGroupName, "", 1, 512)
	v.Str(p+".logStreamName", c.LogStreamName, "", 1, 512)
}

func validateS3Destination(v *wire.Validator, d *s3DestinationConfig) {
	const p = "s3DestinationConfiguration."
	if sc := d.StorageConfiguration; v.NotNull(p+"storageConfiguration", sc != nil) {
		v.ReqStr(p+"storageConfiguration.bucketARN", sc.BucketARN, wire.PatternBucketARN, 1, 2048)
		v.NotNull(p+"storageConfiguration.compressionType", sc.CompressionType != nil)
		v.Enum(p+"storageConfiguration.compressionType", sc.CompressionType, compressionTypes)
		v.ReqStr(p+"storageConfiguration.expectedBucketOwner", sc.ExpectedBucketOwner, wire.PatternAccountID, 12, 12)
		v.Str(p+"storageConfiguration.outputKeyTemplate", sc.OutputKeyTemplate, "", 1, 1024)
		v.Enum(p+"storageConfiguration.storageClass", sc.StorageClass, storageClasses)
	}
	v.IntRange(p+"dataFreshnessInSeconds", d.DataFreshnessInSeconds, freshnessMin, freshnessMax)
	if q := d.DeadLetterQueueS3Configuration; q != nil {
		v.ReqStr(p+"deadLetterQueueS3Configuration.bucketARN", q.BucketARN, wire.PatternBucketARN, 1, 2048)
		v.ReqStr(p+"deadLetterQueueS3Configuration.expectedBucketOwner", q.ExpectedBucketOwner, wire.PatternAccountID, 12, 12)
		v.Str(p+"deadLetterQueueS3Configuration.errorOutputPrefix", q.ErrorOutputPrefix, "", 1, 512)
	}
}

func (s *Server) createChannel(rc *reqCtx, body []byte) (any, error) {
	cs, err := s.channels()
	if err != nil {
		return nil, err
	}
	var in createChannelInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	in.validate(&v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := checkChannelRequest(&in); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(wire.StreamSelector{StreamARN: in.StreamConfigurationList[0].StreamARN})
	if err != nil {
		return nil, err
	}
	if err := checkChannelTags(in.Tags, *in.ChannelName, s.account); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{ResourceARN: s.channelARN(rc, *in.ChannelName)}); err != nil {
		return nil, err
	}
	c, err := cs.CreateChannel(rc.ctx, storage.CreateChannelInput{Name: *in.ChannelName, Stream: stream, Config: channelConfigOf(&in), Tags: in.Tags})
	if err != nil {
		return nil, err
	}
	return struct{ ChannelDescription channelDescription }{s.describe(rc, c)}, nil
}

// checkChannelRequest applies CreateChannel's rules that are not model
// constraints.
func checkChannelRequest(in *createChannelInput) error {
	hasS3, hasTables := in.S3DestinationConfiguration != nil, in.S3TablesDestinationConfiguration != nil
	switch {
	case hasS3 == hasTables:
		return wire.InvalidArgument(msgChannelDestination)
	case hasTables:
		return wire.InvalidArgument(msgS3TablesUnsupported)
	}
	rec := in.StreamConfigurationList[0].RecordConfiguration
	if *rec.RecordFormatType == "GSR_JSON" {
		return wire.InvalidArgument(msgGSRJSONForS3)
	}
	if t := in.S3DestinationConfiguration.StorageConfiguration.OutputKeyTemplate; t != nil {
		if err := channel.ValidateKeyTemplate(*t); err != nil {
			return wire.InvalidArgument(msgBadKeyTemplate(*t, err))
		}
	}
	if q := in.S3DestinationConfiguration.DeadLetterQueueS3Configuration; q != nil && q.ErrorOutputPrefix != nil {
		if err := channel.ValidateKeyTemplate(*q.ErrorOutputPrefix + "!{channel-id}"); err != nil {
			return wire.InvalidArgument(msgBadErrorPrefix(*q.ErrorOutputPrefix, err))
		}
	}
	return nil
}

func checkChannelTags(tags map[string]string, name, account string) error {
	if len(tags) > maxChannelTags {
		return wire.InvalidArgument(msgTooManyChannelTags(name, account))
	}
	return checkTags(tags, name, account)
}

func channelConfigOf(in *createChannelInput) storage.ChannelConfig {
	d := in.S3DestinationConfiguration
	sc := d.StorageConfiguration
	cfg := storage.ChannelConfig{
		RoleARN: *in.ServiceExecutionRoleARN, RecordFormat: *in.StreamConfigurationList[0].RecordConfiguration.RecordFormatType,
		SchemaARN: deref(in.StreamConfigurationList[0].RecordConfiguration.GSRSchemaARN),
		BucketARN: *sc.BucketARN, Compression: *sc.CompressionType, BucketOwner: *sc.ExpectedBucketOwner,
		KeyTemplate: deref(sc.OutputKeyTemplate), StorageClass: deref(sc.StorageClass), FreshnessSecs: freshnessDefault,
	}
	if d.DataFreshnessInSeconds.Set {
		cfg.FreshnessSecs = int(d.DataFreshnessInSeconds.Val)
	}
	if q := d.DeadLetterQueueS3Configuration; q != nil {
		cfg.DLQBucketARN, cfg.DLQOwner, cfg.DLQPrefix = *q.BucketARN, *q.ExpectedBucketOwner, deref(q.ErrorOutputPrefix)
	}
	if e := in.EncryptionConfiguration; e != nil {
		cfg.KMSKeyID = *e.KeyId
	}
	if l := in.LoggingConfiguration; l != nil {
		cfg.Logging = loggingOf(l.CloudWatchLogs)
	}
	return cfg
}

func loggingOf(c *cloudWatchLogs) *storage.ChannelLogging {
	return &storage.ChannelLogging{Enabled: c.Enabled.Val, LogGroup: deref(c.LogGroupName), LogStream: deref(c.LogStreamName)}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Server) channelARN(rc *reqCtx, name string) string {
	return wire.FormatChannelARN(rc.region, s.account, name)
}

// channelDescription is AWS's ChannelDescription shape.
type channelDescription struct {
	ChannelARN                 string
	ChannelCreationTimestamp   wire.EpochTime
	ChannelId                  string
	ChannelName                string
	ChannelStatus              string
	LoggingConfiguration       loggingOut
	ServiceExecutionRoleARN    string
	StreamConfigurationList    []channelStreamOut
	EncryptionConfiguration    *encryptionConfig `json:",omitempty"`
	S3DestinationConfiguration s3DestinationOut
}

type loggingOut struct {
	CloudWatchLogs cloudWatchLogsOut
}

type cloudWatchLogsOut struct {
	Enabled       bool
	LogGroupName  *string `json:",omitempty"`
	LogStreamName *string `json:",omitempty"`
}

type channelStreamOut struct {
	RecordConfiguration     recordConfiguration
	StreamARN               string
	StreamCreationTimestamp wire.EpochTime
}

type s3DestinationOut struct {
	DataFreshnessInSeconds         int
	DeadLetterQueueS3Configuration dlqConfig
	StorageConfiguration           s3StorageConfig
}

func (s *Server) describe(rc *reqCtx, c storage.ChannelInfo) channelDescription {
	cfg := c.Config
	d := channelDescription{
		ChannelARN: s.channelARN(rc, c.Name), ChannelCreationTimestamp: wire.EpochTime(c.Created), ChannelId: c.ID,
		ChannelName: c.Name, ChannelStatus: string(c.Status), ServiceExecutionRoleARN: cfg.RoleARN,
		StreamConfigurationList: []channelStreamOut{{
			RecordConfiguration: recordConfiguration{RecordFormatType: opt(cfg.RecordFormat), GSRSchemaARN: opt(cfg.SchemaARN)},
			StreamARN:           s.arnFor(rc, c.Stream), StreamCreationTimestamp: wire.EpochTime(c.StreamCreated)}},
		S3DestinationConfiguration: s3DestinationOut{
			DataFreshnessInSeconds:         cfg.FreshnessSecs,
			DeadLetterQueueS3Configuration: dlqOut(cfg),
			StorageConfiguration: s3StorageConfig{BucketARN: opt(cfg.BucketARN), CompressionType: opt(cfg.Compression),
				ExpectedBucketOwner: opt(cfg.BucketOwner), OutputKeyTemplate: opt(cfg.KeyTemplate), StorageClass: opt(cfg.StorageClass)},
		},
	}
	if cfg.Logging != nil {
		d.LoggingConfiguration.CloudWatchLogs = cloudWatchLogsOut{Enabled: cfg.Logging.Enabled, LogGroupName: opt(cfg.Logging.LogGroup), LogStreamName: opt(cfg.Logging.LogStream)}
	}
	if cfg.KMSKeyID != "" {
		d.EncryptionConfiguration = &encryptionConfig{EncryptionType: opt("KMS"), KeyId: opt(cfg.KMSKeyID)}
	}
	return d
}

// dlqOut is the dead-letter configuration as described: AWS's default is
// the destination bucket with an error prefix.
func dlqOut(cfg storage.ChannelConfig) dlqConfig {
	if cfg.DLQBucketARN == "" {
		return dlqConfig{BucketARN: opt(cfg.BucketARN), ExpectedBucketOwner: opt(cfg.BucketOwner), ErrorOutputPrefix: opt(channel.DefaultErrorPrefix)}
	}
	prefix := cfg.DLQPrefix
	if prefix == "" {
		prefix = channel.DefaultErrorPrefix
	}
	return dlqConfig{BucketARN: opt(cfg.DLQBucketARN), ExpectedBucketOwner: opt(cfg.DLQOwner), ErrorOutputPrefix: opt(prefix)}
}

type channelARNInput struct {
	ChannelARN *string
}

func (in *channelARNInput) arn() *string { return in.ChannelARN }

// channelInput is a request naming a channel by its ARN.
type channelInput interface{ arn() *string }

// channelRequest is Describe's and Delete's prologue: decode, validate,
// resolve the ARN to a name, admit. An ARN of another account names a
// channel that does not exist here.
func (s *Server) channelRequest(rc *reqCtx, body []byte, in channelInput, more func(*wire.Validator)) (ChannelStore, string, error) {
	cs, err := s.channels()
	if err != nil {
		return nil, "", err
	}
	if err := decodeInput(rc, body, in); err != nil {
		return nil, "", err
	}
	var v wire.Validator
	v.ReqStr("channelARN", in.arn(), wire.PatternChannelARN, 1, 2048)
	if more != nil {
		more(&v)
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	p, _ := wire.ParseChannelARN(*in.arn())
	if p.Account != s.account || !wire.IsName(p.Name) || len(p.Name) > 128 {
		return nil, "", reasonError(wire.TypeResourceNotFound, storage.ReasonChannelNotFound, storage.Facts{Account: p.Account, Channel: p.Name})
	}
	return cs, p.Name, s.admit(rc, AdmissionRequest{ResourceARN: s.channelARN(rc, p.Name)})
}

func (s *Server) describeChannel(rc *reqCtx, body []byte) (any, error) {
	var in channelARNInput
	cs, name, err := s.channelRequest(rc, body, &in, nil)
	if err != nil {
		return nil, err
	}
	c, err := cs.DescribeChannel(rc.ctx, name)
	if err != nil {
		return nil, err
	}
	return struct{ ChannelDescription channelDescription }{s.describe(rc, c)}, nil
}

func (s *Server) deleteChannel(rc *reqCtx, body []byte) (any, error) {
	var in channelARNInput
	cs, name, err := s.channelRequest(rc, body, &in, nil)
	if err != nil {
		return nil, err
	}
	return nil, cs.DeleteChannel(rc.ctx, name)
}

type updateChannelInput struct {
	channelARNInput
	LoggingConfiguration       *loggingConfig
	S3DestinationConfiguration *struct {
		DataFreshnessInSeconds wire.OptInt
	}
	S3TablesDestinationConfiguration *struct{}
}

func (s *Server) updateChannel(rc *reqCtx, body []byte) (any, error) {
	var in updateChannelInput
	cs, name, err := s.channelRequest(rc, body, &in, func(v *wire.Validator) {
		if l := in.LoggingConfiguration; l != nil && v.NotNull("loggingConfiguration.cloudWatchLogs", l.CloudWatchLogs != nil) {
			validateLogs(v, "loggingConfiguration.cloudWatchLogs", l.CloudWatchLogs)
		}
		if d := in.S3DestinationConfiguration; d != nil && v.NotNull("s3DestinationConfiguration.dataFreshnessInSeconds", d.DataFreshnessInSeconds.Set) {
			v.IntRange("s3DestinationConfiguration.dataFreshnessInSeconds", d.DataFreshnessInSeconds, freshnessMin, freshnessMax)
		}
	})
	if err != nil {
		return nil, err
	}
	if in.S3TablesDestinationConfiguration != nil {
		return nil, wire.InvalidArgument(msgS3TablesUnsupported)
	}
	var u storage.ChannelUpdate
	if d := in.S3DestinationConfiguration; d != nil {
		n := int(d.DataFreshnessInSeconds.Val)
		u.FreshnessSecs = &n
	}
	if l := in.LoggingConfiguration; l != nil {
		u.Logging = loggingOf(l.CloudWatchLogs)
	}
	c, err := cs.UpdateChannel(rc.ctx, name, u)
	if err != nil {
		return nil, err
	}
	return struct{ ChannelDescription channelDescription }{s.describe(rc, c)}, nil
}

type listChannelsInput struct {
	MaxResults   wire.OptInt
	NextToken    *string
	StreamFilter []struct {
		StreamARN               *string
		StreamCreationTimestamp wire.OptTime
	}
}

type channelSummary struct {
	ChannelARN               string
	ChannelCreationTimestamp wire.EpochTime
	ChannelDestinationType   string
	ChannelId                string
	ChannelName              string
	ChannelStatus            string
	Streams                  []channelStreamID
}

type channelStreamID struct {
	StreamARN               string
	StreamCreationTimestamp wire.EpochTime
}

type listChannelsOutput struct {
	ChannelSummaries []channelSummary
	NextToken        string `json:",omitempty"`
}

// listChannels lists the account's channels by name, at most MaxResults
// (and 100) a page; the NextToken carries the last name listed and, so that
// a page goes on under the same filter, the filter's stream ARNs.
func (s *Server) listChannels(rc *reqCtx, body []byte) (any, error) {
	cs, err := s.channels()
	if err != nil {
		return nil, err
	}
	var in listChannelsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.IntRange("maxResults", in.MaxResults, 1, 10000)
	v.Str("nextToken", in.NextToken, "", 1, 1048576)
	for i, f := range in.StreamFilter {
		v.ReqStr("streamFilter."+strconv.Itoa(i+1)+".member.streamARN", f.StreamARN, wire.PatternARN, 1, 2048)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	after := ""
	if in.NextToken != nil {
		if after, err = s.openChannelsToken(*in.NextToken); err != nil {
			return nil, err
		}
	}
	if err := s.admit(rc, AdmissionRequest{}); err != nil {
		return nil, err
	}
	all, err := cs.Channels(rc.ctx)
	if err != nil {
		return nil, err
	}
	limit := listChannelsLimit
	if in.MaxResults.Set {
		limit = min(limit, int(in.MaxResults.Val))
	}
	out := listChannelsOutput{ChannelSummaries: []channelSummary{}}
	for _, c := range all {
		if c.Name <= after || !s.channelMatches(rc, c, in) {
			continue
		}
		if len(out.ChannelSummaries) == limit {
			last := out.ChannelSummaries[limit-1].ChannelName
			out.NextToken = s.keys.Seal(wire.TokenListChannels, s.now().UnixMilli(), wire.AppendStr(nil, last))
			break
		}
		out.ChannelSummaries = append(out.ChannelSummaries, s.summary(rc, c))
	}
	return out, nil
}

// channelMatches applies ListChannels' StreamFilter: a channel matches when
// its stream is one of the filter's (and, if given, created then).
func (s *Server) channelMatches(rc *reqCtx, c storage.ChannelInfo, in listChannelsInput) bool {
	if len(in.StreamFilter) == 0 {
		return true
	}
	for _, f := range in.StreamFilter {
		p, _ := wire.ParseStreamARN(*f.StreamARN)
		if p.Account == s.account && p.Name == c.Stream &&
			(!f.StreamCreationTimestamp.Set || f.StreamCreationTimestamp.T.UnixMilli() == c.StreamCreated.UnixMilli()) {
			return true
		}
	}
	return false
}

func (s *Server) summary(rc *reqCtx, c storage.ChannelInfo) channelSummary {
	return channelSummary{ChannelARN: s.channelARN(rc, c.Name), ChannelCreationTimestamp: wire.EpochTime(c.Created),
		ChannelDestinationType: "S3", ChannelId: c.ID, ChannelName: c.Name, ChannelStatus: string(c.Status),
		Streams: []channelStreamID{{StreamARN: s.arnFor(rc, c.Stream), StreamCreationTimestamp: wire.EpochTime(c.StreamCreated)}}}
}

func (s *Server) openChannelsToken(tok string) (string, error) {
	bad := wire.InvalidArgument("Invalid NextToken.")
	issued, payload, err := s.keys.Open(wire.TokenListChannels, tok)
	if err != nil {
		return "", bad
	}
	if wire.Expired(issued, s.now().UnixMilli()) {
		return "", wire.ClientError(wire.TypeExpiredNextToken, msgNextTokenExpired)
	}
	r := wire.NewPayloadReader(payload)
	after := r.Str()
	if !r.Done() {
		return "", bad
	}
	return after, nil
}
