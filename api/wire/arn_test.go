package wire

import "testing"

func TestConsumerARN(t *testing.T) {
	arn := FormatConsumerARN("us-east-1", "000000000000", "s.1", "my-consumer", 1700000000)
	if want := "arn:aws:kinesis:us-east-1:000000000000:stream/s.1/consumer/my-consumer:1700000000"; arn != want {
		t.Fatalf("FormatConsumerARN = %s, want %s", arn, want)
	}
	tests := []struct {
		in   string
		ok   bool
		want ConsumerARNParts
	}{
		{arn, true, ConsumerARNParts{"us-east-1", "000000000000", "s.1", "my-consumer", 1700000000}},
		{"arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a/consumer/b:0", true, ConsumerARNParts{"cn-north-1", "123456789012", "a", "b", 0}},
		// The pattern allows anything between the account and "stream/".
		{"arn:aws:kinesis:r:123456789012:xstream/a/consumer/b:5", true, ConsumerARNParts{"r", "123456789012", "a", "b", 5}},
		{"arn:aws:kinesis:r:123456789012:stream/a/consumer/b:99999999999999999999", true, ConsumerARNParts{"r", "123456789012", "a", "b", -1}},
		{"arn:aws:kinesis:r:123456789012:stream/a/consumer/b", false, ConsumerARNParts{}},
		{"arn:aws:kinesis:r:123456789012:stream/a/consumer/b:1x", false, ConsumerARNParts{}},
		{"arn:aws:kinesis:r:12345678901:stream/a/consumer/b:1", false, ConsumerARNParts{}},
		{"arn:aws:kinesis:r:123456789012:stream/a/b/consumer/c:1", false, ConsumerARNParts{}},
		{"arn:aws:kinesis:r:123456789012:stream/a/consumer/b c:1", false, ConsumerARNParts{}},
		{"arn:aws:kinesis:r:123456789012:stream/a", false, ConsumerARNParts{}},
		{"", false, ConsumerARNParts{}},
	}
	for _, tt := range tests {
		got, ok := ParseConsumerARN(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseConsumerARN(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
