package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type-mismatch texts of AWS's JSON deserializer (SerializationException).
const (
	msgStartOfStruct = "Start of structure or map found where not expected."
	msgStartOfList   = "Start of list found where not expected"
)

// scalarTypeError is the SerializationException for a JSON value of the wrong
// kind where a scalar was expected; target is what AWS names it after
// "converted to" ("an Integer", "a Blob", "milliseconds since epoch"). first
// is the value's first byte, which identifies its JSON kind. A number is
// Coral's TruncatingBigNumber, as AWS words it for String and Blob members.
func scalarTypeError(first byte, target string) *Error {
	switch first {
	case '{':
		return SerializationError(msgStartOfStruct)
	case '[':
		return SerializationError(msgStartOfList)
	case 't', 'f':
		return SerializationError("class java.lang.Boolean can not be converted to " + target)
	case '"':
		return SerializationError("class java.lang.String can not be converted to " + target)
	}
	return SerializationError("class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to " + target)
}

// OptInt is an optional Integer member. Like AWS it truncates fractions and
// clamps to the int32 range rather than rejecting them.
type OptInt struct {
	Val int64
	Set bool
}

func (n *OptInt) UnmarshalJSON(data []byte) error {
	switch data[0] {
	case 'n':
		*n = OptInt{}
		return nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		*n = OptInt{Val: clampInt32(string(data)), Set: true}
		return nil
	}
	return scalarTypeError(data[0], "an Integer")
}

func clampInt32(num string) int64 {
	if v, err := strconv.ParseInt(num, 10, 64); err == nil {
		return max(math.MinInt32, min(math.MaxInt32, v))
	}
	f, _ := strconv.ParseFloat(num, 64) // the decoder has checked the syntax; overflow gives ±Inf
	f = math.Floor(f)
	return int64(max(math.MinInt32, min(math.MaxInt32, f)))
}

// OptBool is an optional Boolean member. AWS converts a few strings.
type OptBool struct {
	Val bool
	Set bool
}

func (b *OptBool) UnmarshalJSON(data []byte) error {
	switch data[0] {
	case 'n':
		*b = OptBool{}
		return nil
	case 't', 'f':
		*b = OptBool{Val: data[0] == 't', Set: true}
		return nil
	case '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return SerializationError(err.Error())
		}
		switch strings.ToUpper(s) {
		case "TRUE", "1", "YES":
			*b = OptBool{Val: true, Set: true}
			return nil
		case "FALSE", "0", "NO":
			*b = OptBool{Set: true}
			return nil
		}
		return SerializationError("'" + strings.ToUpper(s) + "' can not be converted to an Boolean")
	}
	return scalarTypeError(data[0], "an Boolean")
}

// OptTime is an optional Timestamp member: in JSON, epoch seconds with a
// millisecond fraction, as a number only. AWS refuses strings (even numeric
// ones) and every other kind with a SerializationException.
type OptTime struct {
	T   time.Time
	Set bool
}

// msgToEpochMillis is what AWS names a Timestamp in a type error.
const msgToEpochMillis = "milliseconds since epoch"

func (t *OptTime) UnmarshalJSON(data []byte) error {
	switch data[0] {
	case 'n':
		*t = OptTime{}
		return nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		f, _ := strconv.ParseFloat(string(data), 64)
		*t = OptTime{T: epochSeconds(f), Set: true}
		return nil
	}
	return scalarTypeError(data[0], msgToEpochMillis)
}

// epochSeconds converts epoch seconds to a time at millisecond precision, the
// precision AWS keeps. Values beyond year ±292 million saturate.
func epochSeconds(f float64) time.Time {
	ms := math.Round(f * 1000)
	if math.IsNaN(ms) {
		ms = 0
	}
	ms = max(-9.2e15, min(9.2e15, ms))
	return time.UnixMilli(int64(ms)).UTC()
}

// Blob is a Blob member: base64 text in JSON. nil means absent or null; an
// empty string is a present, empty blob.
type Blob []byte

func (b *Blob) UnmarshalJSON(data []byte) error {
	if data[0] == 'n' {
		*b = nil
		return nil
	}
	if data[0] != '"' {
		return scalarTypeError(data[0], "a Blob")
	}
	text := data[1 : len(data)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return SerializationError(err.Error())
		}
		text = []byte(s)
	}
	out, err := decodeBase64(text)
	if err != nil {
		return err
	}
	*b = out
	return nil
}

var strictBase64 = base64.StdEncoding.Strict()

// decodeBase64 decodes canonical padded base64 and otherwise fails with AWS's
// messages. Go's decoder silently skips CR and LF, so those are refused first.
func decodeBase64(text []byte) ([]byte, error) {
	if len(text)%4 == 0 && bytes.IndexByte(text, '\n') < 0 && bytes.IndexByte(text, '\r') < 0 {
		out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := strictBase64.Decode(out, text)
		if err == nil {
			return out[:n], nil
		}
	}
	return nil, base64Error(text)
}

// base64Error explains why text is not a Blob, in AWS's words and order.
func base64Error(text []byte) *Error {
	prefix := "'" + string(text) + "' can not be converted to a Blob: "
	if len(text)%4 != 0 {
		return SerializationError(prefix + "Base64 encoded length is expected a multiple of 4 bytes but found: " + strconv.Itoa(len(text)))
	}
	for i, c := range text {
		valid := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
		if !valid || (c == '=' && i+1 < len(text) && text[i+1] != '=') {
			return SerializationError(prefix + "Invalid Base64 character: '" + string(rune(c)) + "'")
		}
	}
	return SerializationError(prefix + "Invalid last non-pad Base64 character dectected")
}

// EpochTime is an output timestamp: epoch seconds with exactly three decimals
// (never exponent notation), as AWS's JSON protocol writes them.
type EpochTime time.Time

func (t EpochTime) MarshalJSON() ([]byte, error) {
	return AppendEpoch(nil, time.Time(t)), nil
}

func AppendEpoch(b []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	b = strconv.AppendInt(b, sec, 10)
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// jsonQuote renders s as a JSON string literal.
func jsonQuote(s string) ([]byte, error) { return json.Marshal(s) }
