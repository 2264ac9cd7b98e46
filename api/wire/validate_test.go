package wire

import (
	"strings"
	"testing"
)

func TestJavaLen(t *testing.T) {
	for s, want := range map[string]int{"": 0, "abc": 3, "é": 1, "日本": 2, "😀": 2} {
		if got := JavaLen(s); got != want {
			t.Errorf("javaLen(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestRenderPutRecordsEntries(t *testing.T) {
	const e = "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "[]"},
		{1, "[" + e + "]"},
		{2, "[" + e + ", " + e + "]"},
		{maxRenderedEntries, "[" + strings.Repeat(e+", ", maxRenderedEntries-1) + e + "]"},
		{maxRenderedEntries + 1, "[" + strings.Repeat(e+", ", maxRenderedEntries) + "...]"},
	} {
		if got := RenderPutRecordsEntries(tc.n); got != tc.want {
			t.Errorf("RenderPutRecordsEntries(%d) = %.80q..., want %.80q...", tc.n, got, tc.want)
		}
	}
}

func TestCBORErrorBytes(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want string
	}{
		{SerializationError(""), "\xbf\x66__type\x76SerializationException\xff"},
		{ClientError(TypeUnknownOperation, ""), "\xbf\x66__type\x78\x19UnknownOperationException\xff"},
		{SerializationError("x"), "\xbf\x66__type\x76SerializationException\x67Message\x61x\xff"},
		{InvalidArgument(strings.Repeat("m", 300)), "\xbf\x66__type\x78\x18InvalidArgumentException\x67message\x79\x01\x2c" + strings.Repeat("m", 300) + "\xff"},
	} {
		if got := string(cborAmz.EncodeError(tc.e)); got != tc.want {
			t.Errorf("%v: %x, want %x", tc.e, got, tc.want)
		}
	}
}

func TestJSONErrorKeys(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want string
	}{
		{SerializationError(""), `{"__type":"SerializationException"}`},
		{SerializationError("Expected map or null"), `{"__type":"SerializationException","Message":"Expected map or null"}`},
		{ClientError(TypeValidation, "v"), `{"__type":"ValidationException","message":"v"}`},
	} {
		if got := string(JSON11.EncodeError(tc.e)); got != tc.want {
			t.Errorf("%s, want %s", got, tc.want)
		}
	}
}

// TestValidTagText: white space is Unicode category Z only.
func TestValidTagText(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"ü0 _./=+-@%:", true},
		{"", true},
		{"a\u00a0b\u2003c\u2028d\u2029", true}, // Zs, Zl, Zp
		{"a\tb", false},
		{"a\nb", false},
		{"a\rb", false},
		{"a\vb", false},
		{"a\u0085b", false}, // NEL: space to unicode.IsSpace, not category Z
		{"a#b", false},
		{"\xff", false},
	}
	for _, tc := range tests {
		if got := ValidTagText(tc.s); got != tc.want {
			t.Errorf("ValidTagText(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
