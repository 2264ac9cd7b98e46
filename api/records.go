package api

import (
	"strconv"

	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

// Record limits.
const (
	maxRecordBytes     = 1 << 20 // data + partition key (UTF-8) of one record
	maxPutRecordsBytes = 5 << 20 // all records of a PutRecords request, keys included
	maxPutRecords      = 500
	maxGetRecords      = 10000
	maxGetRecordsBytes = 10 << 20
)

type putRecordInput struct {
	StreamName                *string
	Data                      blob
	PartitionKey              *string
	ExplicitHashKey           *string
	SequenceNumberForOrdering *string
	StreamARN                 *string
}

type putRecordOutput struct {
	ShardId        string
	SequenceNumber string
}

func (s *Server) putRecord(rc *reqCtx, body []byte) (any, error) {
	var in putRecordInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v validator
	v.str("sequenceNumberForOrdering", in.SequenceNumberForOrdering, patternSequence, 0, -1)
	checkRecord(&v, -1, in.PartitionKey, in.ExplicitHashKey, in.Data)
	v.streamName("streamName", in.StreamName)
	v.streamARN("streamARN", in.StreamARN)
	if err := v.err(); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(in.StreamName, in.StreamARN)
	if err != nil {
		return nil, err
	}
	entry, size, err := makeEntry(*in.PartitionKey, in.ExplicitHashKey, in.Data, -1)
	if err != nil {
		return nil, err
	}
	if in.SequenceNumberForOrdering != nil {
		entry.SequenceNumberForOrdering = *in.SequenceNumberForOrdering
	}
	if err := s.admit(rc, AdmissionRequest{Stream: stream, Records: 1, Bytes: size}); err != nil {
		return nil, err
	}
	res, err := s.b.Put(rc.ctx, stream, []storage.PutEntry{entry})
	if err != nil {
		return nil, err
	}
	if len(res) != 1 {
		return nil, internalFailure(errResultCount)
	}
	if res[0].Err != nil {
		return nil, res[0].Err // a lone record's failure is the request's
	}
	return putRecordOutput{ShardId: res[0].ShardID, SequenceNumber: res[0].SequenceNumber}, nil
}

// checkRecord applies the model constraints of one record, in AWS's order:
// partitionKey, explicitHashKey, data. index is the record's position in a
// PutRecords request (paths "records.N.member.x"), or -1 for PutRecord.
func checkRecord(v *validator, index int, pk, ehk *string, data blob) {
	if recordValid(pk, ehk, data) {
		return // the common case, without building paths
	}
	prefix := ""
	if index >= 0 {
		prefix = "records." + itoa(index+1) + ".member."
	}
	v.reqStr(prefix+"partitionKey", pk, "", 1, 256)
	v.str(prefix+"explicitHashKey", ehk, patternHashKey, 0, -1)
	if v.notNull(prefix+"data", data != nil) && len(data) > maxRecordBytes {
		v.fail(renderBlob(len(data)), prefix+"data", "Member must have length less than or equal to "+strconv.Itoa(maxRecordBytes))
	}
}

func recordValid(pk, ehk *string, data blob) bool {
	return pk != nil && *pk != "" && (len(*pk) <= 256 || javaLen(*pk) <= 256) &&
		(ehk == nil || isDecimal(*ehk, 39)) && data != nil && len(data) <= maxRecordBytes
}

// makeEntry applies the semantic record checks (hash key range, record size)
// and returns the entry and its size (data + partition-key bytes). index is
// the record's position in a PutRecords request, or -1 for PutRecord.
func makeEntry(pk string, ehk *string, data blob, index int) (storage.PutEntry, int, error) {
	e := storage.PutEntry{PartitionKey: pk, Data: data}
	if ehk != nil {
		k, err := hashkey.Parse(*ehk)
		if err != nil {
			return e, 0, invalidArgument("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was " + *ehk)
		}
		e.ExplicitHashKey = &k
	}
	size := len(data) + len(pk)
	if size > maxRecordBytes {
		where := ""
		if index >= 0 {
			where = " in record " + strconv.Itoa(index)
		}
		return e, 0, invalidArgument("Record size" + where + " (data + partition key) of " + strconv.Itoa(size) +
			" bytes exceeds the maximum record size of " + strconv.Itoa(maxRecordBytes) + " bytes.")
	}
	return e, size, nil
}

type putRecordsEntry struct {
	Data            blob
	ExplicitHashKey *string
	PartitionKey    *string
}

type putRecordsInput struct {
	Records    []putRecordsEntry
	StreamName *string
	StreamARN  *string
}

func (s *Server) putRecords(rc *reqCtx, body []byte) (any, error) {
	var in putRecordsInput
	if _, isJSON := rc.codec.(jsonCodec); !isJSON || !decodePutRecordsFast(body, &in) {
		in = putRecordsInput{}
		if err := decodeInput(rc, body, &in); err != nil {
			return nil, err
		}
	}
	if err := validatePutRecords(&in); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(in.StreamName, in.StreamARN)
	if err != nil {
		return nil, err
	}
	entries, total, err := makeEntries(in.Records)
	if err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: stream, Records: len(entries), Bytes: total}); err != nil {
		return nil, err
	}
	res, err := s.b.Put(rc.ctx, stream, entries)
	if err != nil {
		return nil, err
	}
	if len(res) != len(entries) {
		return nil, internalFailure(errResultCount)
	}
	return putRecordsOutput(res), nil
}

func validatePutRecords(in *putRecordsInput) error {
	var v validator
	if v.notNull("records", in.Records != nil) {
		v.length(quoted("["+strconv.Itoa(len(in.Records))+" records]"), "records", len(in.Records), 1, maxPutRecords)
		for i := range in.Records {
			r := &in.Records[i]
			checkRecord(&v, i, r.PartitionKey, r.ExplicitHashKey, r.Data)
			if len(v.errs) == maxValidationErrors {
				break
			}
		}
	}
	v.streamName("streamName", in.StreamName)
	v.streamARN("streamARN", in.StreamARN)
	return v.err()
}

// makeEntries converts validated records, enforcing the 5 MiB request limit.
func makeEntries(records []putRecordsEntry) ([]storage.PutEntry, int, error) {
	entries := make([]storage.PutEntry, len(records))
	total := 0
	for i, r := range records {
		e, size, err := makeEntry(*r.PartitionKey, r.ExplicitHashKey, r.Data, i)
		if err != nil {
			return nil, 0, err
		}
		entries[i] = e
		total += size
	}
	if total > maxPutRecordsBytes {
		return nil, 0, invalidArgument("Records size exceeds 5 MB limit")
	}
	return entries, total, nil
}

// putRecordsOutput renders {"FailedRecordCount":n,"Records":[...]} with one
// result per request record, in request order.
type putRecordsOutput []storage.PutResult

func (o putRecordsOutput) appendJSON(b []byte) []byte {
	failed := 0
	for _, r := range o {
		if r.Err != nil {
			failed++
		}
	}
	b = append(b, `{"FailedRecordCount":`...)
	b = appendInt(b, int64(failed))
	b = append(b, `,"Records":[`...)
	for i, r := range o {
		if i > 0 {
			b = append(b, ',')
		}
		if r.Err != nil {
			code, msg := recordErrorCode(r.Err)
			b = append(b, `{"ErrorCode":`...)
			b = appendJSONString(b, code)
			b = append(b, `,"ErrorMessage":`...)
			b = appendJSONString(b, msg)
		} else {
			b = append(b, `{"SequenceNumber":`...)
			b = appendJSONString(b, r.SequenceNumber)
			b = append(b, `,"ShardId":`...)
			b = appendJSONString(b, r.ShardID)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

type getRecordsInput struct {
	ShardIterator *string
	Limit         optInt
	StreamARN     *string
}

func (s *Server) getRecords(rc *reqCtx, body []byte) (any, error) {
	var in getRecordsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v validator
	v.intRange("limit", in.Limit, 1, maxGetRecords)
	v.reqStr("shardIterator", in.ShardIterator, "", 1, 512)
	v.streamARN("streamARN", in.StreamARN)
	if err := v.err(); err != nil {
		return nil, err
	}
	pos, err := s.decodeIterator(*in.ShardIterator, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.checkIteratorARN(pos, in.StreamARN); err != nil {
		return nil, err
	}
	if err := s.admit(rc, AdmissionRequest{Stream: pos.Stream}); err != nil {
		return nil, err
	}
	limit := maxGetRecords
	if in.Limit.Set {
		limit = int(in.Limit.Val)
	}
	res, err := s.b.Read(rc.ctx, pos, limit, maxGetRecordsBytes)
	if err != nil {
		return nil, err
	}
	out := getRecordsOutput{res: res}
	if res.Next != nil {
		// A fresh iterator on every call, even without records, so
		// consumers never hold an iterator older than their last call.
		out.next = s.encodeIterator(*res.Next, s.now())
	}
	return out, nil
}

// checkIteratorARN requires an optional StreamARN to name the iterator's stream.
func (s *Server) checkIteratorARN(pos storage.Position, arn *string) error {
	if arn == nil {
		return nil
	}
	parts, _ := parseStreamARN(*arn)
	if parts.account != s.cfg.AccountID || parts.name != pos.Stream {
		return invalidArgument("StreamARN " + *arn + " does not match the stream of the ShardIterator.")
	}
	return nil
}

type getRecordsOutput struct {
	res  storage.ReadResult
	next string
}

func (o getRecordsOutput) appendJSON(b []byte) []byte {
	if need := o.res.Bytes*4/3 + len(o.res.Records)*192 + 512; cap(b) < need {
		b = make([]byte, 0, need)
	}
	b = append(b, `{"Records":[`...)
	for i, r := range o.res.Records {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"SequenceNumber":`...)
		b = appendJSONString(b, r.SequenceNumber)
		b = append(b, `,"ApproximateArrivalTimestamp":`...)
		b = appendEpoch(b, r.Arrival)
		b = append(b, `,"Data":`...)
		b = appendBase64(b, r.Data)
		b = append(b, `,"PartitionKey":`...)
		b = appendJSONString(b, r.PartitionKey)
		b = append(b, '}')
	}
	b = append(b, ']')
	if o.res.Next != nil {
		b = append(b, `,"NextShardIterator":`...)
		b = appendJSONString(b, o.next)
	}
	b = append(b, `,"MillisBehindLatest":`...)
	b = appendInt(b, o.res.MillisBehindLatest)
	if o.res.Next == nil {
		b = appendChildShards(b, o.res.ChildShards)
	}
	return append(b, '}')
}

func appendChildShards(b []byte, children []storage.ChildShard) []byte {
	b = append(b, `,"ChildShards":[`...)
	for i, c := range children {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"ShardId":`...)
		b = appendJSONString(b, c.ShardID)
		b = append(b, `,"ParentShards":[`...)
		for j, p := range c.ParentShards {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p)
		}
		b = append(b, `],"HashKeyRange":{"StartingHashKey":`...)
		b = appendJSONString(b, c.HashRange.Start.String())
		b = append(b, `,"EndingHashKey":`...)
		b = appendJSONString(b, c.HashRange.End.String())
		b = append(b, "}}"...)
	}
	return append(b, ']')
}
