package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// CBOR 1.1 (application/x-amz-cbor-1.1), the Java SDK's default for Kinesis.
// The body is one map with the same keys as JSON; blobs are byte strings and
// timestamps are tag 1 around an integer count of epoch milliseconds (AWS's
// reading of tag 1, not RFC 8949's seconds), in requests and responses.

type cborCodec struct{}

var cborAmz Codec = cborCodec{}

var (
	cborDec = mustDecMode(cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyQuiet,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		MaxNestedLevels:   32,
		IndefLength:       cbor.IndefLengthAllowed,
	})
	cborEnc = mustEncMode(cbor.EncOptions{})
)

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustEncMode(o cbor.EncOptions) cbor.EncMode {
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func (cborCodec) ContentType() string { return ContentTypeCBOR11 }

// Decode answers a body that is not a CBOR map, or not well-formed CBOR,
// with the bare SerializationException of the pre-dispatch checks, as the
// JSON codec does.
func (cborCodec) Decode(body []byte, v any) *Error {
	if !isCBORMap(body) {
		return SerializationError("")
	}
	err := cborDec.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var te *cbor.UnmarshalTypeError
	if errors.As(err, &te) {
		return SerializationError(cborTypeMessage(te))
	}
	return SerializationError("")
}

// isCBORMap reports whether body's first item is a map (major type 5). It
// does not check the rest of the body.
func isCBORMap(body []byte) bool { return len(body) > 0 && body[0]>>5 == 5 }

// cborTypeMessage words a CBOR kind mismatch like the JSON one.
func cborTypeMessage(te *cbor.UnmarshalTypeError) string {
	isList, isMap := te.CBORType == "array", te.CBORType == "map"
	switch goType := strings.TrimPrefix(te.GoType, "*"); {
	case goType == "string" && isList:
		return msgStartOfList
	case goType == "string" && isMap:
		return msgStartOfStruct
	case goType == "string":
		return "class " + cborJavaClass(te.CBORType) + " can not be converted to an String"
	case strings.HasPrefix(goType, "[]"):
		if isMap {
			return msgStartOfStruct
		}
		return "Expected list or null"
	case strings.HasPrefix(goType, "map["):
		if isList {
			return msgStartOfList
		}
		return "Expected map or null"
	case isList:
		return msgStartOfList
	}
	return "Expected null"
}

func cborJavaClass(cborType string) string {
	switch cborType {
	case "primitives":
		return "java.lang.Boolean"
	case "byte string":
		return "java.nio.HeapByteBuffer"
	}
	return "com.amazon.coral.value.json.numbers.TruncatingBigNumber"
}

// CBORValuer is implemented by outputs whose CBOR form differs from the
// value itself (the JSON hot-path outputs).
type CBORValuer interface {
	CBORValue() any
}

func (cborCodec) Encode(v any) ([]byte, error) {
	if c, ok := v.(CBORValuer); ok {
		v = c.CBORValue()
	}
	return cborEnc.Marshal(v)
}

// EncodeError writes the map {"__type": ..., "message": ...} ("Message" for
// a SerializationException, no message when AWS sends none) with an
// indefinite length, as AWS's CBOR writer does: the bare pre-dispatch bodies
// are then byte for byte AWS's (bf 66 "__type" 76 "SerializationException" ff).
func (cborCodec) EncodeError(e *Error) []byte {
	b := make([]byte, 0, 32+len(e.Type)+len(e.Message))
	b = append(b, 0xbf)
	b = appendCBORText(b, "__type")
	b = appendCBORText(b, e.Type)
	if e.Message != "" {
		b = appendCBORText(b, messageKey(e.Type))
		b = appendCBORText(b, e.Message)
	}
	return append(b, 0xff)
}

// appendCBORText appends s as a definite-length text string (major type 3).
func appendCBORText(b []byte, s string) []byte {
	const major = 3 << 5
	switch n := uint64(len(s)); {
	case n < 24:
		b = append(b, major|byte(n))
	case n <= math.MaxUint8:
		b = append(b, major|24, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= math.MaxUint32:
		b = binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, major|27), n)
	}
	return append(b, s...)
}

// cborFirst maps a CBOR item's initial byte to the first byte of the JSON
// value of the same kind, so scalarTypeError words both alike.
func cborFirst(b byte) byte {
	switch {
	case b == 0xf4 || b == 0xf5:
		return 't'
	case b>>5 == 2 || b>>5 == 3:
		return '"'
	case b>>5 == 4:
		return '['
	case b>>5 == 5:
		return '{'
	}
	return '0'
}

func isCBORNull(data []byte) bool { return data[0] == 0xf6 || data[0] == 0xf7 }

func isCBORFloat(b byte) bool { return b == 0xf9 || b == 0xfa || b == 0xfb }

// cborNumber decodes an integer or float item. Integers too large for int64
// saturate, as AWS clamps them anyway.
func cborNumber(data []byte) (i int64, f float64, isInt, ok bool) {
	switch {
	case data[0]>>5 == 0:
		var u uint64
		ok = cborDec.Unmarshal(data, &u) == nil
		return int64(min(u, math.MaxInt64)), 0, true, ok
	case data[0]>>5 == 1:
		if cborDec.Unmarshal(data, &i) != nil {
			return math.MinInt64, 0, true, true
		}
		return i, 0, true, true
	case isCBORFloat(data[0]):
		ok = cborDec.Unmarshal(data, &f) == nil
		return 0, f, false, ok
	}
	return 0, 0, false, false
}

func (n *OptInt) UnmarshalCBOR(data []byte) error {
	if isCBORNull(data) {
		*n = OptInt{}
		return nil
	}
	i, f, isInt, ok := cborNumber(data)
	if !ok {
		return scalarTypeError(cborFirst(data[0]), "an Integer")
	}
	if !isInt {
		if math.IsNaN(f) { // NaN converts to a CPU-dependent int64
			return scalarTypeError(cborFirst(data[0]), "an Integer")
		}
		i = int64(max(math.MinInt32, min(math.MaxInt32, math.Floor(f))))
	}
	*n = OptInt{Val: max(math.MinInt32, min(math.MaxInt32, i)), Set: true}
	return nil
}

func (b *OptBool) UnmarshalCBOR(data []byte) error {
	switch {
	case isCBORNull(data):
		*b = OptBool{}
		return nil
	case data[0] == 0xf4 || data[0] == 0xf5:
		*b = OptBool{Val: data[0] == 0xf5, Set: true}
		return nil
	case data[0]>>5 == 3:
		var s string
		if err := cborDec.Unmarshal(data, &s); err != nil {
			return SerializationError(err.Error())
		}
		q, _ := jsonQuote(s)
		return b.UnmarshalJSON(q)
	}
	return scalarTypeError(cborFirst(data[0]), "an Boolean")
}

// UnmarshalCBOR reads tag 1 (or a bare number): an integer is epoch
// milliseconds, as the AWS SDKs send it; a float is epoch seconds. Any other
// kind, text included, is refused with the JSON protocol's texts.
func (t *OptTime) UnmarshalCBOR(data []byte) error {
	if isCBORNull(data) {
		*t = OptTime{}
		return nil
	}
	if data[0] == 0xc1 && len(data) > 1 {
		data = data[1:]
	}
	i, f, isInt, ok := cborNumber(data)
	switch {
	case !ok:
		return scalarTypeError(cborFirst(data[0]), msgToEpochMillis)
	case isInt:
		*t = OptTime{T: time.UnixMilli(max(-9.2e15, min(9.2e15, i))).UTC(), Set: true}
	default:
		*t = OptTime{T: epochSeconds(f), Set: true}
	}
	return nil
}

// UnmarshalCBOR takes a byte string, or base64 text as in JSON.
func (b *Blob) UnmarshalCBOR(data []byte) error {
	switch {
	case isCBORNull(data):
		*b = nil
		return nil
	case data[0]>>5 == 2:
		var raw []byte // the decoder copies: nothing aliases the pooled body
		if err := cborDec.Unmarshal(data, &raw); err != nil {
			return SerializationError(err.Error())
		}
		if raw == nil {
			raw = []byte{}
		}
		*b = raw
		return nil
	case data[0]>>5 == 3:
		var s string
		if err := cborDec.Unmarshal(data, &s); err != nil {
			return SerializationError(err.Error())
		}
		out, err := decodeBase64([]byte(s))
		if err != nil {
			return err
		}
		*b = out
		return nil
	}
	return scalarTypeError(cborFirst(data[0]), "a Blob")
}

// MarshalCBOR writes tag 1 around epoch milliseconds.
func (t EpochTime) MarshalCBOR() ([]byte, error) {
	return cborEnc.Marshal(cbor.Tag{Number: 1, Content: time.Time(t).UnixMilli()})
}
