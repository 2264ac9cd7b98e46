package api

import (
	"encoding/binary"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// The enhanced fan-out consumer operations: RegisterStreamConsumer,
// DescribeStreamConsumer, ListStreamConsumers and DeregisterStreamConsumer.
// A consumer is named by its ARN, or by its stream's ARN and its name
// (wire.FormatConsumerARN: the ARN ends with the creation second, so an ARN
// of a consumer deregistered and registered again names nothing).

// consumerOut is AWS's Consumer shape; consumerDescription adds StreamARN.
type consumerOut struct {
	ConsumerName              string
	ConsumerARN               string
	ConsumerStatus            string
	ConsumerCreationTimestamp wire.EpochTime
}

type consumerDescription struct {
	ConsumerName              string
	ConsumerARN               string
	ConsumerStatus            string
	ConsumerCreationTimestamp wire.EpochTime
	StreamARN                 string
}

func (s *Server) consumerARN(rc *reqCtx, c storage.ConsumerInfo) string {
	return wire.FormatConsumerARN(rc.region, s.account, c.Stream, c.Name, c.Created.Unix())
}

func (s *Server) consumerOut(rc *reqCtx, c storage.ConsumerInfo) consumerOut {
	return consumerOut{ConsumerName: c.Name, ConsumerARN: s.consumerARN(rc, c), ConsumerStatus: string(c.Status),
		ConsumerCreationTimestamp: wire.EpochTime(c.Created)}
}

type registerConsumerInput struct {
	StreamARN    *string
	ConsumerName *string
	Tags         map[string]string
}

func (s *Server) registerConsumer(rc *reqCtx, body []byte) (any, error) {
	var in registerConsumerInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.ReqStr("streamARN", in.StreamARN, wire.PatternARN, 1, 2048)
	v.ReqStr("consumerName", in.ConsumerName, wire.PatternName, 1, 128)
	v.TagMap("tags", in.Tags, in.Tags != nil)
	if err := v.Err(); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(wire.StreamSelector{StreamARN: in.StreamARN})
	if err != nil {
		return nil, err
	}
	if err := checkConsumerTags(in.Tags, stream, *in.ConsumerName, s.account); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: stream}); err != nil {
		return nil, err
	}
	c, err := s.b.RegisterConsumer(rc.ctx, stream, *in.ConsumerName, in.Tags)
	if err != nil {
		return nil, err
	}
	return struct{ Consumer consumerOut }{s.consumerOut(rc, c)}, nil
}

// checkConsumerTags applies stream tags' rules to a new consumer's tags: at
// most 50, then the character checks and the reserved aws: prefix (with
// AddTagsToStream's wording; AWS's consumer wording was never captured).
func checkConsumerTags(tags map[string]string, stream, consumer, account string) error {
	if len(tags) > storage.MaxTagsPerConsumer {
		return wire.InvalidArgument(msgTooManyConsumerTags(consumer, stream, account))
	}
	return checkTags(tags, stream, account)
}

// consumerSelector is how Describe and Deregister name a consumer: its ARN,
// or its stream's ARN and its name (or all three, if they agree).
type consumerSelector struct {
	StreamARN    *string
	ConsumerName *string
	ConsumerARN  *string
}

func (c *consumerSelector) validate(v *wire.Validator) {
	v.StreamARN("streamARN", c.StreamARN)
	v.Str("consumerName", c.ConsumerName, wire.PatternName, 1, 128)
	v.ConsumerARN("consumerARN", c.ConsumerARN)
}

// consumerRef is a resolved selector: a stream of this account, a consumer
// name and, when named by ARN, the creation second the ARN ends with (-1
// when not).
type consumerRef struct {
	stream, name string
	secs         int64
}

// resolve turns a validated selector into a reference. A consumer ARN of
// another account, or with a stream name no stream can have, names a
// consumer that does not exist here.
func (s *Server) resolveConsumer(c consumerSelector) (consumerRef, error) {
	if c.ConsumerARN == nil {
		if c.StreamARN == nil || c.ConsumerName == nil {
			return consumerRef{}, wire.InvalidArgument(msgConsumerSelector)
		}
		stream, err := s.resolveStream(wire.StreamSelector{StreamARN: c.StreamARN})
		return consumerRef{stream: stream, name: *c.ConsumerName, secs: -1}, err
	}
	p, _ := wire.ParseConsumerARN(*c.ConsumerARN)
	if c.ConsumerName != nil && *c.ConsumerName != p.Consumer {
		return consumerRef{}, wire.InvalidArgument(msgConsumerMismatch)
	}
	if c.StreamARN != nil {
		sp, _ := wire.ParseStreamARN(*c.StreamARN)
		if sp.Name != p.Stream || sp.Account != p.Account {
			return consumerRef{}, wire.InvalidArgument(msgConsumerMismatch)
		}
	}
	if p.Account != s.account || len(p.Stream) > 128 || len(p.Consumer) > 128 || p.CreatedSecs < 0 {
		return consumerRef{}, reasonError(wire.TypeResourceNotFound, storage.ReasonConsumerNotFound,
			storage.Facts{Account: p.Account, Stream: p.Stream, Consumer: p.Consumer})
	}
	return consumerRef{stream: p.Stream, name: p.Consumer, secs: p.CreatedSecs}, nil
}

// describeRef looks a reference up; a consumer whose creation second is not
// the ARN's is not the consumer the ARN names.
func (s *Server) describeRef(rc *reqCtx, ref consumerRef) (storage.ConsumerInfo, error) {
	c, err := s.b.DescribeConsumer(rc.ctx, ref.stream, ref.name)
	if err == nil && ref.secs >= 0 && c.Created.Unix() != ref.secs {
		err = reasonError(wire.TypeResourceNotFound, storage.ReasonConsumerNotFound,
			storage.Facts{Account: s.account, Stream: ref.stream, Consumer: ref.name})
	}
	return c, err
}

// consumerRequest is Describe's and Deregister's prologue: decode, validate,
// resolve, admit.
func (s *Server) consumerRequest(rc *reqCtx, body []byte) (consumerRef, error) {
	var in consumerSelector
	if err := decodeInput(rc, body, &in); err != nil {
		return consumerRef{}, err
	}
	var v wire.Validator
	in.validate(&v)
	if err := v.Err(); err != nil {
		return consumerRef{}, err
	}
	ref, err := s.resolveConsumer(in)
	if err != nil {
		return ref, err
	}
	return ref, s.admit(rc, s.consumerAdmission(rc, ref))
}

func (s *Server) describeConsumer(rc *reqCtx, body []byte) (any, error) {
	ref, err := s.consumerRequest(rc, body)
	if err != nil {
		return nil, err
	}
	c, err := s.describeRef(rc, ref)
	if err != nil {
		return nil, err
	}
	d := consumerDescription{ConsumerName: c.Name, ConsumerARN: s.consumerARN(rc, c), ConsumerStatus: string(c.Status),
		ConsumerCreationTimestamp: wire.EpochTime(c.Created), StreamARN: s.arnFor(rc, c.Stream)}
	return struct{ ConsumerDescription consumerDescription }{d}, nil
}

func (s *Server) deregisterConsumer(rc *reqCtx, body []byte) (any, error) {
	ref, err := s.consumerRequest(rc, body)
	if err != nil {
		return nil, err
	}
	if ref.secs >= 0 { // named by ARN: it must be that incarnation
		if _, err := s.describeRef(rc, ref); err != nil {
			return nil, err
		}
	}
	return nil, s.b.DeregisterConsumer(rc.ctx, ref.stream, ref.name)
}

type listConsumersInput struct {
	StreamARN               *string
	NextToken               *string
	MaxResults              wire.OptInt
	StreamCreationTimestamp wire.OptTime
}

type listConsumersOutput struct {
	Consumers []consumerOut
	NextToken string `json:",omitempty"`
}

// listConsumersMax is the most consumers ListStreamConsumers returns in one
// call, and its default.
const listConsumersMax = 100

// consumerPage is where a ListStreamConsumers page starts: after the
// consumer named after (created at afterMs), in one incarnation of the stream.
type consumerPage struct {
	created int64 // the stream's creation, unix ns
	afterMs int64
	after   string
}

func (s *Server) listConsumers(rc *reqCtx, body []byte) (any, error) {
	var in listConsumersInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.ReqStr("streamARN", in.StreamARN, wire.PatternARN, 1, 2048)
	v.Str("nextToken", in.NextToken, "", 1, 1048576)
	v.IntRange("maxResults", in.MaxResults, 1, 10000)
	if err := v.Err(); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(wire.StreamSelector{StreamARN: in.StreamARN})
	if err != nil {
		return nil, err
	}
	page, err := s.consumerPageFor(in, stream)
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: stream}); err != nil {
		return nil, err
	}
	return s.listConsumersPage(rc, stream, in, page)
}

func (s *Server) consumerPageFor(in listConsumersInput, stream string) (consumerPage, error) {
	if in.NextToken == nil {
		return consumerPage{}, nil
	}
	if in.StreamCreationTimestamp.Set {
		return consumerPage{}, wire.InvalidArgument("NextToken and StreamCreationTimestamp cannot be provided together.")
	}
	return s.openConsumersToken(*in.NextToken, stream)
}

func (s *Server) listConsumersPage(rc *reqCtx, stream string, in listConsumersInput, page consumerPage) (any, error) {
	info, err := s.b.DescribeStream(rc.ctx, stream)
	if err != nil {
		return nil, err
	}
	notFound := reasonError(wire.TypeResourceNotFound, storage.ReasonStreamNotFound, storage.Facts{Account: s.account, Stream: stream})
	switch {
	case page.created != 0 && page.created != info.Created.UnixNano():
		return nil, notFound
	case in.StreamCreationTimestamp.Set && in.StreamCreationTimestamp.T.UnixMilli() != info.Created.UnixMilli():
		return nil, notFound
	}
	all, err := s.b.ListConsumers(rc.ctx, stream)
	if err != nil {
		return nil, err
	}
	limit := listConsumersMax
	if in.MaxResults.Set {
		limit = min(limit, int(in.MaxResults.Val))
	}
	rest := consumersAfter(all, page)
	out := listConsumersOutput{Consumers: []consumerOut{}}
	for i, c := range rest {
		if i == limit {
			last := rest[i-1]
			p := consumerPage{created: info.Created.UnixNano(), afterMs: last.Created.UnixMilli(), after: last.Name}
			out.NextToken = s.keys.Seal(wire.TokenListConsumers, s.now().UnixMilli(), p.payload(stream))
			break
		}
		out.Consumers = append(out.Consumers, s.consumerOut(rc, c))
	}
	return out, nil
}

// consumersAfter returns the consumers (in registration order) after the
// page's last one; if that one is gone, those created after it.
func consumersAfter(all []storage.ConsumerInfo, p consumerPage) []storage.ConsumerInfo {
	if p.after == "" {
		return all
	}
	for i, c := range all {
		if c.Name == p.after && c.Created.UnixMilli() == p.afterMs {
			return all[i+1:]
		}
	}
	var out []storage.ConsumerInfo
	for _, c := range all {
		if c.Created.UnixMilli() > p.afterMs {
			out = append(out, c)
		}
	}
	return out
}

func (p consumerPage) payload(stream string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(p.created))
	b = binary.BigEndian.AppendUint64(b, uint64(p.afterMs))
	b = wire.AppendStr(b, p.after)
	return wire.AppendStr(b, stream)
}

// openConsumersToken opens a ListStreamConsumers NextToken, which must have
// been issued for this stream.
func (s *Server) openConsumersToken(tok, stream string) (consumerPage, error) {
	bad := wire.InvalidArgument("Invalid NextToken.")
	issued, payload, err := s.keys.Open(wire.TokenListConsumers, tok)
	if err != nil {
		return consumerPage{}, bad
	}
	if wire.Expired(issued, s.now().UnixMilli()) {
		return consumerPage{}, wire.ClientError(wire.TypeExpiredNextToken, msgNextTokenExpired)
	}
	r := wire.NewPayloadReader(payload)
	p := consumerPage{created: int64(r.U64()), afterMs: int64(r.U64()), after: r.Str()}
	if name := r.Str(); !r.Done() || name != stream {
		return consumerPage{}, bad
	}
	return p, nil
}
