package wire

import (
	"bytes"
	"encoding/base64"
	"unicode/utf8"
)

// decodePutRecordsFast decodes the common shape of a PutRecords body without
// encoding/json, whose validating scanner is most of the cost of the hot path.
//
// It accepts only plain input: the members StreamName, StreamARN and Records
// (exact case), records with Data, PartitionKey and ExplicitHashKey, string
// values without escape sequences, canonical base64, and null. On anything
// else it returns false and the caller decodes with encoding/json, which then
// produces the result or the exact SerializationException. Invariant (checked
// by FuzzPutRecordsFastPath): when it returns true, in equals what
// encoding/json would have decoded.
func decodePutRecordsFast(body []byte, in *PutRecordsInput) bool {
	s := scanner{b: body, arena: make([]byte, 0, len(body)/4*3+4)}
	seenRecords := false
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "StreamName":
			return s.optText(&in.StreamName)
		case "StreamARN":
			return s.optText(&in.StreamARN)
		case "Records":
			// encoding/json merges a repeated key's array into the first
			// one's elements; rather than mimic that, leave such bodies to it.
			if seenRecords {
				return false
			}
			seenRecords = true
			return s.records(&in.Records)
		}
		return false
	}) && s.end()
}

// scanner walks a JSON text. Decoded blobs share one arena allocation, cut
// with full slice expressions so no blob can grow into the next.
type scanner struct {
	b     []byte
	i     int
	arena []byte
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) expect(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// object scans a JSON object, calling member with each key once the scanner
// stands at its value; member decodes the value, or returns false to refuse
// the body (an unknown key, a bad value).
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.expect('{') {
		return false
	}
	if s.expect('}') {
		return true
	}
	for {
		key, ok := s.rawString()
		if !ok || !s.expect(':') || !member(key) {
			return false
		}
		if s.expect('}') {
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

func (s *scanner) null() bool {
	s.skipSpace()
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// rawString returns a string's bytes; it refuses escapes.
func (s *scanner) rawString() ([]byte, bool) {
	if !s.expect('"') {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i:], '"')
	if n < 0 {
		return nil, false
	}
	str := s.b[s.i : s.i+n]
	if bytes.IndexByte(str, '\\') >= 0 {
		return nil, false
	}
	s.i += n + 1
	return str, true
}

// optText decodes a string or null into *dst. Control characters and
// invalid UTF-8 (which encoding/json rejects or rewrites) are refused.
func (s *scanner) optText(dst **string) bool {
	if s.null() {
		*dst = nil
		return true
	}
	raw, ok := s.rawString()
	if !ok || !plainText(raw) {
		return false
	}
	str := string(raw)
	*dst = &str
	return true
}

func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	return utf8.Valid(b)
}

func (s *scanner) records(dst *[]PutRecordsEntry) bool {
	if s.null() {
		*dst = nil
		return true
	}
	if !s.expect('[') {
		return false
	}
	out := make([]PutRecordsEntry, 0, 500)
	if s.expect(']') {
		*dst = out
		return true
	}
	for {
		var e PutRecordsEntry
		if !s.record(&e) {
			return false
		}
		out = append(out, e)
		if s.expect(']') {
			*dst = out
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

func (s *scanner) record(e *PutRecordsEntry) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "Data":
			return s.blobValue(&e.Data)
		case "PartitionKey":
			return s.optText(&e.PartitionKey)
		case "ExplicitHashKey":
			return s.optText(&e.ExplicitHashKey)
		}
		return false
	})
}

// blobValue decodes canonical base64 into the arena; anything the strict decoder
// refuses (or skips, like CR and LF) goes to the slow path.
func (s *scanner) blobValue(dst *Blob) bool {
	if s.null() {
		*dst = nil
		return true
	}
	raw, ok := s.rawString()
	if !ok || len(raw)%4 != 0 {
		return false
	}
	n := base64.StdEncoding.DecodedLen(len(raw))
	if len(s.arena)+n > cap(s.arena) {
		s.arena = make([]byte, 0, max(n, 64<<10))
	}
	start := len(s.arena)
	buf := s.arena[start : start+n]
	m, err := decodeBase64Strict(buf, raw)
	if err != nil || bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		return false
	}
	s.arena = s.arena[:start+m]
	*dst = Blob(s.arena[start : start+m : start+m])
	return true
}

// decodePutRecordFast is decodePutRecordsFast for PutRecord's body, under the
// same rules and invariant (checked by FuzzPutRecordFastPath). A repeated
// member is decoded again, so the last one wins, as in encoding/json.
func decodePutRecordFast(body []byte, in *PutRecordInput) bool {
	// The arena is the one allocation: it holds Data (also when empty,
	// which must decode to a non-nil Blob, as encoding/json's does).
	s := scanner{b: body, arena: make([]byte, 0, len(body)/4*3+4)}
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "StreamName":
			return s.optText(&in.StreamName)
		case "StreamARN":
			return s.optText(&in.StreamARN)
		case "Data":
			return s.blobValue(&in.Data)
		case "PartitionKey":
			return s.optText(&in.PartitionKey)
		case "ExplicitHashKey":
			return s.optText(&in.ExplicitHashKey)
		case "SequenceNumberForOrdering":
			return s.optText(&in.SequenceNumberForOrdering)
		}
		return false
	}) && s.end()
}
