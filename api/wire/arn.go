package wire

import (
	"regexp"
	"strconv"
)

// FormatStreamARN is the ARN AWS gives a stream.
func FormatStreamARN(region, account, name string) string {
	return "arn:aws:kinesis:" + region + ":" + account + ":stream/" + name
}

// ARNParts is a parsed stream ARN.
type ARNParts struct {
	Region, Account, Name string
}

// arnPattern is AWS's StreamARN pattern as a full match, with the region,
// account and name captured. Like Java's (and RE2's leftmost-first) greedy
// matching, the account is the last ":<12 digits>:stream/" in the string.
var arnPattern = regexp.MustCompile(`^arn:aws.*:kinesis:(.*):(\d{12}):stream/(\S+)$`)

// ParseStreamARN matches arn:aws.*:kinesis:.*:\d{12}:stream/\S+ and splits out
// region, account and stream name.
func ParseStreamARN(s string) (ARNParts, bool) {
	m := arnPattern.FindStringSubmatch(s)
	if m == nil {
		return ARNParts{}, false
	}
	return ARNParts{Region: m[1], Account: m[2], Name: m[3]}, true
}

// StreamSelector is the pair of members by which every stream-targeted
// request names its stream: StreamName, StreamARN or both. Request structs
// embed it; JSON and CBOR decoding promote its fields like the request's own.
type StreamSelector struct {
	StreamName *string
	StreamARN  *string
}

// Selector returns the embedded selector, so code can take any request that
// embeds one.
func (s *StreamSelector) Selector() *StreamSelector { return s }

// Validate checks both members' model constraints. AWS reports them after
// every other member of the request, so call it last.
func (s *StreamSelector) Validate(v *Validator) {
	v.StreamName("streamName", s.StreamName)
	v.StreamARN("streamARN", s.StreamARN)
}

// FormatConsumerARN is the ARN AWS gives a consumer:
// arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMERNAME:CREATIONEPOCH,
// the epoch being the consumer's creation second.
func FormatConsumerARN(region, account, stream, consumer string, createdSecs int64) string {
	return FormatStreamARN(region, account, stream) + "/consumer/" + consumer + ":" + strconv.FormatInt(createdSecs, 10)
}

// ConsumerARNParts is a parsed consumer ARN. CreatedSecs is -1 when the
// epoch does not fit an int64 (the ARN then names no consumer).
type ConsumerARNParts struct {
	Region, Account, Stream, Consumer string
	CreatedSecs                       int64
}

// resourceARNPattern is the model's ResourceARN pattern as a full match.
var resourceARNPattern = regexp.MustCompile(`^arn:aws.*:kinesis:.*:\d{12}:.*stream/\S+$`)

// consumerARNPattern is AWS's ConsumerARN pattern,
// ^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+
// as a full match (Java's matches()), capturing region, account, stream,
// consumer and epoch. The greedy region makes the account the last
// ":<12 digits>:" that a "stream/" follows, as for stream ARNs.
var consumerARNPattern = regexp.MustCompile(`^arn:aws.*:kinesis:(.*):(\d{12}):.*stream/([a-zA-Z0-9_.-]+)/consumer/([a-zA-Z0-9_.-]+):([0-9]+)$`)

// ParseConsumerARN matches AWS's ConsumerARN pattern and splits out its parts;
// false means the text does not match the pattern.
func ParseConsumerARN(s string) (ConsumerARNParts, bool) {
	m := consumerARNPattern.FindStringSubmatch(s)
	if m == nil {
		return ConsumerARNParts{}, false
	}
	secs, err := strconv.ParseInt(m[5], 10, 64)
	if err != nil {
		secs = -1
	}
	return ConsumerARNParts{Region: m[1], Account: m[2], Stream: m[3], Consumer: m[4], CreatedSecs: secs}, true
}

// FormatChannelARN is a channel's ARN: arn:aws:kinesis:REGION:ACCOUNT:channel/NAME.
// (AWS's examples end with an ID-like text; whether that is the name or the
// ChannelId is not documented, and shardlog uses the name, which is unique
// in the account.)
func FormatChannelARN(region, account, name string) string {
	return "arn:aws:kinesis:" + region + ":" + account + ":channel/" + name
}

// channelARNPattern is PatternChannelARN as a full match, capturing region,
// account and name.
var channelARNPattern = regexp.MustCompile(`^arn:aws.*:kinesis:(.*):(\d{12}):channel/(\S+)$`)

// ParseChannelARN matches PatternChannelARN and splits out region, account
// and channel name.
func ParseChannelARN(s string) (ARNParts, bool) {
	m := channelARNPattern.FindStringSubmatch(s)
	if m == nil {
		return ARNParts{}, false
	}
	return ARNParts{Region: m[1], Account: m[2], Name: m[3]}, true
}

// channelPatterns are the channel operations' patterns as full matches.
var channelPatterns = map[string]*regexp.Regexp{
	PatternChannelARN: channelARNPattern,
	PatternRoleARN:    regexp.MustCompile(`^` + PatternRoleARN + `$`),
	PatternBucketARN:  regexp.MustCompile(`^` + PatternBucketARN + `$`),
	PatternAccountID:  regexp.MustCompile(`^` + PatternAccountID + `$`),
}
