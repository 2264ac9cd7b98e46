package wire

import (
	"time"
)

// The data plane's hot shapes: PutRecords' request and response, and
// GetRecords' response, in both protocols. JSON renders the responses without
// reflection (AppendJSON) straight from the api's views of storage's results;
// CBOR copies them into plain structs (CBORValue), whose json tags the CBOR
// encoder honours.

// PutRecordsEntry is one record of a PutRecords request.
type PutRecordsEntry struct {
	Data            Blob
	ExplicitHashKey *string
	PartitionKey    *string
}

// PutRecordsInput is a PutRecords request. JSON bodies are decoded by
// DecodePutRecords' fast path when they are plain (fastjson.go).
type PutRecordsInput struct {
	Records []PutRecordsEntry
	StreamSelector
}

// DecodePutRecords decodes a PutRecords body with c. A JSON body goes through
// the non-reflective decoder first; anything it does not handle falls back to
// c, which words the errors.
func DecodePutRecords(c Codec, body []byte, in *PutRecordsInput) *Error {
	if _, isJSON := c.(jsonCodec); isJSON && decodePutRecordsFast(body, in) {
		return nil
	}
	*in = PutRecordsInput{}
	return c.Decode(body, in)
}

// PutRecordInput is a PutRecord request. JSON bodies are decoded by
// DecodePutRecord's fast path when they are plain (fastjson.go).
type PutRecordInput struct {
	StreamSelector
	Data                      Blob
	PartitionKey              *string
	ExplicitHashKey           *string
	SequenceNumberForOrdering *string
}

// DecodePutRecord decodes a PutRecord body with c, as DecodePutRecords does.
func DecodePutRecord(c Codec, body []byte, in *PutRecordInput) *Error {
	if _, isJSON := c.(jsonCodec); isJSON && decodePutRecordFast(body, in) {
		return nil
	}
	*in = PutRecordInput{}
	return c.Decode(body, in)
}

// PutResult is one PutRecords result: SequenceNumber and ShardId for a stored
// record, ErrorCode and ErrorMessage for a failed one.
type PutResult struct {
	SequenceNumber string `json:",omitempty"`
	ShardId        string `json:",omitempty"`
	ErrorCode      string `json:",omitempty"`
	ErrorMessage   string `json:",omitempty"`
}

// PutResults are a PutRecords request's results, one per request record, in
// request order. The api implements it over storage's results, so the hot
// JSON path copies none of them.
type PutResults interface {
	Len() int
	At(i int) PutResult
	// Failed counts the results with an ErrorCode.
	Failed() int
}

// PutRecordsOutput renders {"FailedRecordCount":n,"Records":[...]}, and
// "EncryptionType" after them when it is set ("KMS": AWS leaves the member
// out for an unencrypted stream).
type PutRecordsOutput struct {
	Results        PutResults // required
	EncryptionType string
}

func (o PutRecordsOutput) AppendJSON(b []byte) []byte {
	b = append(b, `{"FailedRecordCount":`...)
	b = AppendInt(b, int64(o.Results.Failed()))
	b = append(b, `,"Records":[`...)
	for i := range o.Results.Len() {
		r := o.Results.At(i)
		if i > 0 {
			b = append(b, ',')
		}
		if r.ErrorCode != "" {
			b = append(b, `{"ErrorCode":`...)
			b = AppendString(b, r.ErrorCode)
			b = append(b, `,"ErrorMessage":`...)
			b = AppendString(b, r.ErrorMessage)
		} else {
			b = append(b, `{"SequenceNumber":`...)
			b = AppendString(b, r.SequenceNumber)
			b = append(b, `,"ShardId":`...)
			b = AppendString(b, r.ShardId)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if o.EncryptionType != "" {
		b = append(b, `,"EncryptionType":`...)
		b = AppendString(b, o.EncryptionType)
	}
	return append(b, '}')
}

func (o PutRecordsOutput) CBORValue() any {
	records := make([]PutResult, o.Results.Len())
	for i := range records {
		records[i] = o.Results.At(i)
	}
	return struct {
		FailedRecordCount int
		Records           []PutResult
		EncryptionType    string `json:",omitempty"`
	}{o.Results.Failed(), records, o.EncryptionType}
}

// Record is one record of a GetRecords response. Data is never nil: AWS sends
// an empty blob, not a null. PartitionKey is "" for a record written without
// one (AUTO record distribution), and then left out, as AWS documents.
// EncryptionType is "KMS" for a record stored encrypted, and "" (left out,
// as AWS does) otherwise.
type Record struct {
	SequenceNumber              string
	ApproximateArrivalTimestamp EpochTime
	Data                        []byte
	PartitionKey                string `json:",omitempty"`
	EncryptionType              string `json:",omitempty"`
}

// HashKeyRange is a shard's range of hash keys, in decimal.
type HashKeyRange struct {
	StartingHashKey string
	EndingHashKey   string
}

// ChildShard is a child of a closed shard, listed at the parent's end.
type ChildShard struct {
	ShardId      string
	ParentShards []string
	HashKeyRange HashKeyRange
}

// Records are a GetRecords page's records. The api implements it over
// storage's records, so the hot JSON path copies none of them.
type Records interface {
	Len() int
	At(i int) Record
}

// GetRecordsOutput is one GetRecords page. ChildShards is set (possibly to an
// empty list) exactly when NextShardIterator is nil: the shard is closed and
// read to its end.
type GetRecordsOutput struct {
	Records            Records
	NextShardIterator  *string
	MillisBehindLatest int64
	ChildShards        *[]ChildShard
	// SizeHint is the records' data and partition-key bytes, to size the
	// JSON buffer once.
	SizeHint int
}

func (o GetRecordsOutput) AppendJSON(b []byte) []byte {
	b = o.appendRecords(b)
	if o.NextShardIterator != nil {
		b = append(b, `,"NextShardIterator":`...)
		b = AppendString(b, *o.NextShardIterator)
	}
	b = append(b, `,"MillisBehindLatest":`...)
	b = AppendInt(b, o.MillisBehindLatest)
	if o.NextShardIterator == nil {
		var children []ChildShard
		if o.ChildShards != nil {
			children = *o.ChildShards
		}
		b = appendChildShards(b, children)
	}
	return append(b, '}')
}

// appendRecords opens the output object and writes its "Records" member.
func (o GetRecordsOutput) appendRecords(b []byte) []byte {
	n := o.Records.Len()
	if need := o.SizeHint*4/3 + n*192 + 512; cap(b) < need {
		b = make([]byte, 0, need)
	}
	b = append(b, `{"Records":[`...)
	for i := range n {
		r := o.Records.At(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"SequenceNumber":`...)
		b = AppendString(b, r.SequenceNumber)
		b = append(b, `,"ApproximateArrivalTimestamp":`...)
		b = AppendEpoch(b, time.Time(r.ApproximateArrivalTimestamp))
		b = append(b, `,"Data":`...)
		b = AppendBase64(b, r.Data)
		if r.PartitionKey != "" {
			b = append(b, `,"PartitionKey":`...)
			b = AppendString(b, r.PartitionKey)
		}
		if r.EncryptionType != "" {
			b = append(b, `,"EncryptionType":`...)
			b = AppendString(b, r.EncryptionType)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func (o GetRecordsOutput) CBORValue() any {
	records := make([]Record, o.Records.Len())
	for i := range records {
		records[i] = o.Records.At(i)
	}
	return struct {
		Records            []Record
		NextShardIterator  *string `json:",omitempty"`
		MillisBehindLatest int64
		ChildShards        *[]ChildShard `json:",omitempty"`
	}{records, o.NextShardIterator, o.MillisBehindLatest, o.ChildShards}
}

func appendChildShards(b []byte, children []ChildShard) []byte {
	b = append(b, `,"ChildShards":[`...)
	for i, c := range children {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"ShardId":`...)
		b = AppendString(b, c.ShardId)
		b = append(b, `,"ParentShards":[`...)
		for j, p := range c.ParentShards {
			if j > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, p)
		}
		b = append(b, `],"HashKeyRange":{"StartingHashKey":`...)
		b = AppendString(b, c.HashKeyRange.StartingHashKey)
		b = append(b, `,"EndingHashKey":`...)
		b = AppendString(b, c.HashKeyRange.EndingHashKey)
		b = append(b, "}}"...)
	}
	return append(b, ']')
}
