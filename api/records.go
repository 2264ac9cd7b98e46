package api

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/hashkey"
	"github.com/shardlog/shardlog/storage"
)

// Record limits. A record's own limit (data + partition key, UTF-8) is its
// stream's maximum record size, 1 to 10 MiB (storage.RecordLimit); the model
// caps Data alone at the largest any stream may have.
const (
	maxDataBytes = storage.MaxMaxRecordSizeKiB << 10 // the model's Data length maximum, 10485760
	// minRecordLimit is the smallest maximum record size a stream can have:
	// a request whose records all fit it needs no look-up of the stream's.
	minRecordLimit = storage.MinMaxRecordSizeKiB << 10
	// maxPutRecordsBytes is all records of a PutRecords request, keys
	// included: 10 MiB on every stream since AWS raised it from 5 MiB with
	// large records (the SDK's PutRecords doc: "up to a limit of 10 MiB for
	// the entire request, including partition keys").
	maxPutRecordsBytes = 10 << 20
	maxPutRecords      = 500
	maxGetRecords      = 10000
	maxGetRecordsBytes = 10 << 20
)

type putRecordOutput struct {
	ShardId        string
	SequenceNumber string
	// EncryptionType is KMS for a record stored encrypted; AWS leaves it
	// out otherwise.
	EncryptionType string `json:",omitempty"`
}

// AppendJSON renders the output as encoding/json would (its fields hold no
// character json.Marshal escapes), without reflection: PutRecord is the
// most frequent call of all.
func (o putRecordOutput) AppendJSON(b []byte) []byte {
	b = append(b, `{"ShardId":`...)
	b = wire.AppendString(b, o.ShardId)
	b = append(b, `,"SequenceNumber":`...)
	b = wire.AppendString(b, o.SequenceNumber)
	if o.EncryptionType != "" {
		b = append(b, `,"EncryptionType":`...)
		b = wire.AppendString(b, o.EncryptionType)
	}
	return append(b, '}')
}

func (s *Server) putRecord(rc *reqCtx, body []byte) (any, error) {
	var in wire.PutRecordInput
	if e := wire.DecodePutRecord(rc.codec, body, &in); e != nil {
		return nil, e
	}
	check := func(keyOptional bool) error {
		var v wire.Validator
		v.Str("sequenceNumberForOrdering", in.SequenceNumberForOrdering, wire.PatternSequence, 0, -1)
		checkRecord(&v, -1, in.PartitionKey, in.ExplicitHashKey, in.Data, keyOptional)
		in.StreamSelector.Validate(&v)
		return v.Err()
	}
	if err := s.validateRecords(rc, in.StreamSelector, in.PartitionKey == nil, check); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(in.StreamSelector)
	if err != nil {
		return nil, err
	}
	entry, size, err := makeEntry(in.PartitionKey, in.ExplicitHashKey, in.Data)
	if err != nil {
		return nil, err
	}
	if in.SequenceNumberForOrdering != nil {
		entry.SequenceNumberForOrdering = *in.SequenceNumberForOrdering
	}
	out, err := s.putOne(rc, stream, entry, size)
	s.metrics.stream(stream).putRecordDone(err, size, time.Since(rc.start), out.ShardId)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// putOne admits and stores PutRecord's entry. On a failure of the record
// itself, out names its shard (for the shard-level metrics).
func (s *Server) putOne(rc *reqCtx, stream string, entry storage.PutEntry, size int) (out putRecordOutput, err error) {
	if err := s.admit(rc, AdmissionRequest{Stream: stream, Records: 1, Bytes: size}); err != nil {
		return out, err
	}
	if err := s.checkRecordSizes(rc, stream, []storage.PutEntry{entry}, size, false); err != nil {
		return out, err
	}
	res, err := s.b.Put(rc.ctx, stream, []storage.PutEntry{entry})
	if err != nil {
		return out, err
	}
	if len(res) != 1 {
		return out, internalFailure(errResultCount)
	}
	out.ShardId = res[0].ShardID
	if res[0].Err != nil {
		return out, res[0].Err // a lone record's failure is the request's
	}
	out.SequenceNumber = res[0].SequenceNumber
	if res[0].Encrypted {
		out.EncryptionType = storage.EncryptionKMS
	}
	return out, nil
}

// validateRecords runs check, the model validation of a put, with partition
// keys required; when that fails and some key is missing (keyMissing), it
// runs check again with keys optional if the stream distributes records by
// AUTO. AWS's current model no longer requires PartitionKey, since AUTO
// streams ignore it, but a USER_PARTITION_KEY stream needs one: for it
// shardlog keeps the captured "must not be null" validation text (AWS's
// answer there since the model changed was never captured, unverified).
// Only a request that fails the first check looks its stream up.
func (s *Server) validateRecords(rc *reqCtx, sel wire.StreamSelector, keyMissing bool, check func(keyOptional bool) error) error {
	err := check(false)
	if err == nil || !keyMissing {
		return err
	}
	auto, lookupErr := s.autoDistributed(rc, sel)
	switch {
	case lookupErr != nil:
		return lookupErr
	case !auto:
		return err
	}
	return check(true)
}

// DistributionSource is a Backend that answers a stream's record
// distribution without a full DescribeStream: cluster mode answers from the
// node's applied metadata, so a put without partition keys (AUTO's usual
// form) costs no Raft round. Optional.
type DistributionSource interface {
	RecordDistribution(ctx context.Context, stream string) (storage.RecordDistribution, error)
}

// autoDistributed reports whether a put's stream exists with AUTO record
// distribution; a selector that does not resolve, or a stream not found, is
// not. A lookup that could not be answered (storage.ErrUnavailable: cluster
// mode without a metadata leader) is the request's error, so the client
// retries rather than hearing that its keys are missing.
func (s *Server) autoDistributed(rc *reqCtx, sel wire.StreamSelector) (bool, error) {
	var v wire.Validator
	sel.Validate(&v)
	if v.Err() != nil {
		return false, nil
	}
	name, err := s.resolveStream(sel)
	if err != nil {
		return false, nil
	}
	var d storage.RecordDistribution
	if ds, ok := s.b.(DistributionSource); ok {
		d, err = ds.RecordDistribution(rc.ctx, name)
	} else {
		var info storage.StreamInfo
		info, err = s.b.DescribeStream(rc.ctx, name)
		d = info.Distribution
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return false, err
	}
	return err == nil && d == storage.DistributionAuto, nil
}

// checkRecord applies the model constraints of one record, in AWS's order:
// partitionKey, explicitHashKey, data. index is the record's position in a
// PutRecords request (paths "records.N.member.x"), or -1 for PutRecord.
// keyOptional allows a missing partition key (validateRecords).
func checkRecord(v *wire.Validator, index int, pk, ehk *string, data wire.Blob, keyOptional bool) {
	if recordValid(pk, ehk, data, keyOptional) {
		return // the common case, without building paths
	}
	prefix := ""
	if index >= 0 {
		prefix = "records." + strconv.Itoa(index+1) + ".member."
	}
	if keyOptional {
		v.Str(prefix+"partitionKey", pk, "", 1, 256)
	} else {
		v.ReqStr(prefix+"partitionKey", pk, "", 1, 256)
	}
	v.Str(prefix+"explicitHashKey", ehk, wire.PatternHashKey, 0, -1)
	if v.NotNull(prefix+"data", data != nil) && len(data) > maxDataBytes {
		v.Fail(wire.RenderBlob(len(data)), prefix+"data", "Member must have length less than or equal to "+strconv.Itoa(maxDataBytes))
	}
}

func recordValid(pk, ehk *string, data wire.Blob, keyOptional bool) bool {
	return (pk == nil && keyOptional || pk != nil && *pk != "" && (len(*pk) <= 256 || wire.JavaLen(*pk) <= 256)) &&
		(ehk == nil || wire.IsDecimal(*ehk, 39)) && data != nil && len(data) <= maxDataBytes
}

// makeEntry applies the hash-key range check and returns the entry and its
// size (data + partition-key bytes), which checkRecordSizes holds to the
// stream's limit. A missing partition key (allowed on AUTO streams only) is
// stored as "".
func makeEntry(pkp *string, ehk *string, data wire.Blob) (storage.PutEntry, int, error) {
	var pk string
	if pkp != nil {
		pk = *pkp
	}
	e := storage.PutEntry{PartitionKey: pk, Data: data}
	if ehk != nil {
		k, err := hashkey.Parse(*ehk)
		if err != nil {
			return e, 0, wire.InvalidArgument("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was " + *ehk)
		}
		e.ExplicitHashKey = &k
	}
	return e, len(data) + len(pk), nil
}

// checkRecordSizes refuses a request that holds a record larger than the
// stream's maximum record size (InvalidArgumentException). largest is the
// largest record's size; a request whose records all fit the smallest
// limit a stream can have skips the look-up. The limit is the stream's, so
// it is checked once the stream is known to exist and the caller is
// admitted: a missing stream is ResourceNotFoundException whatever the
// record sizes. many words the message for PutRecords, naming the record.
func (s *Server) checkRecordSizes(rc *reqCtx, stream string, entries []storage.PutEntry, largest int, many bool) error {
	if largest <= minRecordLimit {
		return nil
	}
	limit, err := s.b.RecordLimit(rc.ctx, stream)
	if err != nil {
		return err
	}
	for i, e := range entries {
		if size := len(e.Data) + len(e.PartitionKey); size > limit {
			return recordTooLarge(size, limit, i, many)
		}
	}
	return nil
}

// recordTooLarge is the InvalidArgumentException of a record over its
// stream's limit, which the text names in bytes. AWS's text was never
// captured; this one names what a client needs to act on.
func recordTooLarge(size, limit, index int, many bool) error {
	where := ""
	if many {
		where = " in record " + strconv.Itoa(index)
	}
	return wire.InvalidArgument("Record size" + where + " (data + partition key) of " + strconv.Itoa(size) +
		" bytes exceeds the maximum record size of " + strconv.Itoa(limit) + " bytes.")
}

func (s *Server) putRecords(rc *reqCtx, body []byte) (any, error) {
	var in wire.PutRecordsInput
	if e := wire.DecodePutRecords(rc.codec, body, &in); e != nil {
		return nil, e
	}
	keyMissing := false
	for i := range in.Records {
		keyMissing = keyMissing || in.Records[i].PartitionKey == nil
	}
	if err := s.validateRecords(rc, in.StreamSelector, keyMissing, func(keyOptional bool) error { return validatePutRecords(&in, keyOptional) }); err != nil {
		return nil, err
	}
	stream, err := s.resolveStream(in.StreamSelector)
	if err != nil {
		return nil, err
	}
	entries, total, largest, err := makeEntries(in.Records)
	if err != nil {
		return nil, err
	}
	res, err := s.putMany(rc, stream, entries, total, largest)
	s.metrics.stream(stream).putRecordsDone(entries, res, err, time.Since(rc.start))
	if err != nil {
		return nil, err
	}
	return putRecordsOutput(res), nil
}

// putMany admits and stores PutRecords' entries: one result per entry.
func (s *Server) putMany(rc *reqCtx, stream string, entries []storage.PutEntry, total, largest int) ([]storage.PutResult, error) {
	if err := s.admit(rc, AdmissionRequest{Stream: stream, Records: len(entries), Bytes: total}); err != nil {
		return nil, err
	}
	if err := s.checkRecordSizes(rc, stream, entries, largest, true); err != nil {
		return nil, err
	}
	res, err := s.b.Put(rc.ctx, stream, entries)
	if err != nil {
		return nil, err
	}
	if len(res) != len(entries) {
		return nil, internalFailure(errResultCount)
	}
	return res, nil
}

// putRecordsOutput renders storage's results, one per request record. Its
// EncryptionType is KMS when a record was stored encrypted (in a request
// that met StartStreamEncryption half way, some were); AWS reports one
// value for the request.
func putRecordsOutput(res []storage.PutResult) wire.PutRecordsOutput {
	out := wire.PutRecordsOutput{Results: putResults(res)}
	for i := range res {
		if res[i].Err == nil && res[i].Encrypted {
			out.EncryptionType = storage.EncryptionKMS
			break
		}
	}
	return out
}

// putResults shows storage's results to the wire encoder without copying.
type putResults []storage.PutResult

func (p putResults) Len() int { return len(p) }

func (p putResults) Failed() int {
	n := 0
	for i := range p {
		if p[i].Err != nil {
			n++
		}
	}
	return n
}

func (p putResults) At(i int) wire.PutResult {
	r := &p[i]
	if r.Err != nil {
		code, msg := recordErrorCode(r.Err)
		return wire.PutResult{ErrorCode: code, ErrorMessage: msg}
	}
	return wire.PutResult{SequenceNumber: r.SequenceNumber, ShardId: r.ShardID}
}

func validatePutRecords(in *wire.PutRecordsInput, keyOptional bool) error {
	var v wire.Validator
	if v.NotNull("records", in.Records != nil) {
		if n := len(in.Records); n < 1 || n > maxPutRecords { // rendered only when it fails
			v.Length(wire.Quoted(wire.RenderPutRecordsEntries(n)), "records", n, 1, maxPutRecords)
		}
		for i := range in.Records {
			r := &in.Records[i]
			checkRecord(&v, i, r.PartitionKey, r.ExplicitHashKey, r.Data, keyOptional)
			if v.Full() {
				break
			}
		}
	}
	in.StreamSelector.Validate(&v)
	return v.Err()
}

// makeEntries converts validated records, enforcing the request limit; it
// returns the entries, their total size and the largest one's.
func makeEntries(records []wire.PutRecordsEntry) ([]storage.PutEntry, int, int, error) {
	entries := make([]storage.PutEntry, len(records))
	total, largest := 0, 0
	for i, r := range records {
		e, size, err := makeEntry(r.PartitionKey, r.ExplicitHashKey, r.Data)
		if err != nil {
			return nil, 0, 0, err
		}
		entries[i] = e
		total += size
		largest = max(largest, size)
	}
	if total > maxPutRecordsBytes {
		// AWS's text for its former 5 MiB limit was "Records size exceeds 5
		// MB limit" (captured); the 10 MiB one's is assumed to follow it.
		return nil, 0, 0, wire.InvalidArgument("Records size exceeds 10 MB limit")
	}
	return entries, total, largest, nil
}

type getRecordsInput struct {
	ShardIterator *string
	Limit         wire.OptInt
	StreamARN     *string
}

func (s *Server) getRecords(rc *reqCtx, body []byte) (any, error) {
	var in getRecordsInput
	if err := decodeInput(rc, body, &in); err != nil {
		return nil, err
	}
	var v wire.Validator
	v.IntRange("limit", in.Limit, 1, maxGetRecords)
	v.ReqStr("shardIterator", in.ShardIterator, "", 1, 512)
	v.StreamARN("streamARN", in.StreamARN)
	if err := v.Err(); err != nil {
		return nil, err
	}
	pos, err := s.decodeIterator(*in.ShardIterator, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.checkIteratorARN(pos, in.StreamARN); err != nil {
		return nil, err
	}
	limit := maxGetRecords
	if in.Limit.Set {
		limit = int(in.Limit.Val)
	}
	res, err := s.read(rc, pos, limit)
	s.metrics.stream(pos.Stream).getRecordsDone(pos.ShardIndex, res, err, time.Since(rc.start))
	if err != nil {
		return nil, err
	}
	out := getRecordsOutput(res)
	if res.Next != nil {
		// A fresh iterator on every call, even without records, so
		// consumers never hold an iterator older than their last call.
		next := s.encodeIterator(*res.Next, s.now())
		out.NextShardIterator = &next
	}
	return out, nil
}

// read admits and runs GetRecords' read.
func (s *Server) read(rc *reqCtx, pos storage.Position, limit int) (storage.ReadResult, error) {
	if err := s.admit(rc, AdmissionRequest{Stream: pos.Stream}); err != nil {
		return storage.ReadResult{}, err
	}
	return s.b.Read(rc.ctx, pos, limit, maxGetRecordsBytes)
}

// getRecordsOutput renders a page; the caller sets NextShardIterator.
func getRecordsOutput(res storage.ReadResult) wire.GetRecordsOutput {
	out := wire.GetRecordsOutput{Records: records(res.Records), MillisBehindLatest: res.MillisBehindLatest, SizeHint: res.Bytes}
	if res.Next == nil {
		children := childShardsOut(res.ChildShards)
		out.ChildShards = &children
	}
	return out
}

// childShardsOut renders a closed shard's children (never nil).
func childShardsOut(cs []storage.ChildShard) []wire.ChildShard {
	children := make([]wire.ChildShard, len(cs))
	for i, c := range cs {
		children[i] = wire.ChildShard{ShardId: c.ShardID, ParentShards: append([]string{}, c.ParentShards...), HashKeyRange: hashKeyRange(c.HashRange)}
	}
	return children
}

// records shows storage's records to the wire encoder without copying.
type records []storage.Record

func (r records) Len() int { return len(r) }

func (r records) At(i int) wire.Record {
	x := &r[i]
	data := x.Data
	if data == nil {
		data = []byte{}
	}
	rec := wire.Record{SequenceNumber: x.SequenceNumber, ApproximateArrivalTimestamp: wire.EpochTime(x.Arrival), Data: data, PartitionKey: x.PartitionKey}
	if x.Encrypted {
		rec.EncryptionType = storage.EncryptionKMS
	}
	return rec
}

// checkIteratorARN requires an optional StreamARN to name the iterator's stream.
func (s *Server) checkIteratorARN(pos storage.Position, arn *string) error {
	if arn == nil {
		return nil
	}
	parts, _ := wire.ParseStreamARN(*arn)
	if parts.Account != s.account || parts.Name != pos.Stream {
		return wire.InvalidArgument("StreamARN " + *arn + " does not match the stream of the ShardIterator.")
	}
	return nil
}
