package wire

import "regexp"

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
