package wire

import (
	"io"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// SubscribeToShard's response body is an event stream (kinesis-api.md §4.5):
// binary messages framed by the AWS SDK for Go v2's eventstream encoder
// (prelude, headers, payload, CRCs), first the initial-response event, then
// SubscribeToShardEvent events, and an exception event for an error in the
// middle of the stream. Payloads are JSON or CBOR, as the request was.

// ContentTypeEventStream is the HTTP Content-Type of an event stream.
const ContentTypeEventStream = "application/vnd.amazon.eventstream"

// Event-stream header names and values.
const (
	headerMessageType   = ":message-type"
	headerEventType     = ":event-type"
	headerExceptionType = ":exception-type"
	headerContentType   = ":content-type"

	messageTypeEvent     = "event"
	messageTypeException = "exception"

	EventInitialResponse  = "initial-response"
	EventSubscribeToShard = "SubscribeToShardEvent"
)

// SubscribeToShardEvent is one event of a subscription. ContinuationSequenceNumber
// is nil (absent, which clients read as null) only in the last event at a
// closed shard's end, which carries ChildShards.
type SubscribeToShardEvent struct {
	Records                    Records
	ContinuationSequenceNumber *string
	MillisBehindLatest         int64
	ChildShards                []ChildShard // nil: absent
	// SizeHint is the records' data and partition-key bytes, to size the
	// JSON buffer once.
	SizeHint int
}

func (o SubscribeToShardEvent) AppendJSON(b []byte) []byte {
	b = GetRecordsOutput{Records: o.Records, SizeHint: o.SizeHint}.appendRecords(b)
	if o.ContinuationSequenceNumber != nil {
		b = append(b, `,"ContinuationSequenceNumber":`...)
		b = AppendString(b, *o.ContinuationSequenceNumber)
	}
	b = append(b, `,"MillisBehindLatest":`...)
	b = AppendInt(b, o.MillisBehindLatest)
	if o.ChildShards != nil {
		b = appendChildShards(b, o.ChildShards)
	}
	return append(b, '}')
}

func (o SubscribeToShardEvent) CBORValue() any {
	records := make([]Record, o.Records.Len())
	for i := range records {
		records[i] = o.Records.At(i)
	}
	return struct {
		Records                    []Record
		ContinuationSequenceNumber *string `json:",omitempty"`
		MillisBehindLatest         int64
		ChildShards                []ChildShard `json:",omitempty"`
	}{records, o.ContinuationSequenceNumber, o.MillisBehindLatest, o.ChildShards}
}

// EventWriter writes one subscription's event stream to w. It is not safe
// for concurrent use: one goroutine writes a response.
type EventWriter struct {
	w     io.Writer
	codec Codec
	enc   *eventstream.Encoder
}

// NewEventWriter returns a writer of events whose payloads c encodes.
func NewEventWriter(w io.Writer, c Codec) *EventWriter {
	return &EventWriter{w: w, codec: c, enc: eventstream.NewEncoder()}
}

// payloadType is the :content-type of payloads: AWS labels JSON payloads
// application/json (kinesis-api.md §4.5); for CBOR its label is not
// captured, and the protocol's own type is the natural one (unverified).
func (e *EventWriter) payloadType() string {
	if e.codec.ContentType() == ContentTypeCBOR11 {
		return ContentTypeCBOR11
	}
	return ContentTypeJSON
}

// InitialResponse writes the initial-response event, an empty object: the
// SDKs read it as SubscribeToShard's output before any event.
func (e *EventWriter) InitialResponse() error {
	payload, err := e.codec.Encode(struct{}{})
	if err != nil {
		return err
	}
	return e.write(messageTypeEvent, headerEventType, EventInitialResponse, payload)
}

// Event writes one SubscribeToShardEvent.
func (e *EventWriter) Event(ev SubscribeToShardEvent) error {
	payload, err := e.codec.Encode(ev)
	if err != nil {
		return err
	}
	return e.write(messageTypeEvent, headerEventType, EventSubscribeToShard, payload)
}

// Exception writes an error as an exception event: :exception-type is the
// AWS type, the payload {"message": ...}.
func (e *EventWriter) Exception(ae *Error) error {
	payload, err := e.codec.Encode(struct {
		Message string `json:"message"`
	}{ae.Message})
	if err != nil {
		return err
	}
	return e.write(messageTypeException, headerExceptionType, ae.Type, payload)
}

func (e *EventWriter) write(msgType, typeHeader, typ string, payload []byte) error {
	var msg eventstream.Message
	msg.Headers.Set(typeHeader, eventstream.StringValue(typ))
	msg.Headers.Set(headerContentType, eventstream.StringValue(e.payloadType()))
	msg.Headers.Set(headerMessageType, eventstream.StringValue(msgType))
	msg.Payload = payload
	return e.enc.Encode(e.w, msg)
}
