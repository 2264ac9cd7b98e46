package wire

import "testing"

// FuzzPutRecordsFastPath checks the fast PutRecords decoder against
// encoding/json: whenever it accepts a body, the slow path decodes the same.
func FuzzPutRecordsFastPath(f *testing.F) {
	for _, s := range []string{
		`{"StreamName":"s","Records":[{"Data":"YWJj","PartitionKey":"k"}]}`,
		` { "Records" : [ { "PartitionKey" : "k" , "Data" : "" , "ExplicitHashKey" : null } ] , "StreamARN" : null } `,
		`{"Records":[]}`, `{"Records":null}`, `{}`, `{"Records":[{}]}`,
		`{"Records":[{"Data":"YQ=="},{"Data":"YWI="}],"StreamName":"é"}`,
		`{"StreamName":"a","StreamName":"b"}`, `{"Records":[{"Data":"YR=="}]}`, `{"StreamName":"\u0041"}`,
		// A repeated key: encoding/json merges the arrays (found in review).
		`{"Records":[{"Data":"AA==","PartitionKey":"a"}],"Records":[{"Data":"AA=="}],"StreamName":"s"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow PutRecordsInput
		if !decodePutRecordsFast(body, &fast) {
			return
		}
		if err := JSON11.Decode(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if !equalPutRecordsInput(fast, slow) {
			t.Fatalf("%q: fast %+v, slow %+v", body, fast, slow)
		}
	})
}

func equalPutRecordsInput(a, b PutRecordsInput) bool {
	if !equalStrPtr(a.StreamName, b.StreamName) || !equalStrPtr(a.StreamARN, b.StreamARN) ||
		(a.Records == nil) != (b.Records == nil) || len(a.Records) != len(b.Records) {
		return false
	}
	for i := range a.Records {
		x, y := a.Records[i], b.Records[i]
		if (x.Data == nil) != (y.Data == nil) || string(x.Data) != string(y.Data) ||
			!equalStrPtr(x.PartitionKey, y.PartitionKey) || !equalStrPtr(x.ExplicitHashKey, y.ExplicitHashKey) {
			return false
		}
	}
	return true
}

func equalStrPtr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// FuzzPutRecordFastPath checks the fast PutRecord decoder against
// encoding/json, as FuzzPutRecordsFastPath does for PutRecords.
func FuzzPutRecordFastPath(f *testing.F) {
	for _, s := range []string{
		`{"StreamName":"s","Data":"YWJj","PartitionKey":"k"}`,
		` { "PartitionKey" : "k" , "Data" : "" , "ExplicitHashKey" : null , "StreamARN" : null } `,
		`{}`, `{"Data":null}`, `{"Data":"YR=="}`, `{"StreamName":"\u0041"}`, `{"partitionkey":"k"}`,
		`{"StreamName":"a","StreamName":"b","Data":"AA==","Data":"AAA="}`,
		`{"SequenceNumberForOrdering":"1","StreamName":"é","PartitionKey":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow PutRecordInput
		if !decodePutRecordFast(body, &fast) {
			return
		}
		if err := JSON11.Decode(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if !equalStrPtr(fast.StreamName, slow.StreamName) || !equalStrPtr(fast.StreamARN, slow.StreamARN) ||
			(fast.Data == nil) != (slow.Data == nil) || string(fast.Data) != string(slow.Data) ||
			!equalStrPtr(fast.PartitionKey, slow.PartitionKey) || !equalStrPtr(fast.ExplicitHashKey, slow.ExplicitHashKey) ||
			!equalStrPtr(fast.SequenceNumberForOrdering, slow.SequenceNumberForOrdering) {
			t.Fatalf("%q: fast %+v, slow %+v", body, fast, slow)
		}
	})
}
