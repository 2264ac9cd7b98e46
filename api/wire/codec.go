package wire

import (
	"encoding/json"
	"errors"
	"reflect"
)

// Codec is one wire format: JSON 1.1 (jsonCodec) or CBOR 1.1 (cborCodec). Both
// decode into the same request structs, whose field types (Blob, OptInt,
// OptTime, ...) implement each format's rules, and encode the same outputs.
type Codec interface {
	ContentType() string
	// Decode parses body into v, a pointer to a request struct. Any failure
	// is a SerializationException, worded as AWS words it.
	Decode(body []byte, v any) *Error
	// Encode renders an output value or an error body.
	Encode(v any) ([]byte, error)
	EncodeError(e *Error) []byte
}

// JSONAppender is implemented by hot-path outputs (PutRecords, GetRecords)
// that render themselves without reflection.
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}

type jsonCodec struct{}

// The Content-Types of AWS's protocols. application/json is not one: AWS
// answers it with Coral envelopes before any operation runs (protocol.go).
const (
	ContentTypeJSON11 = "application/x-amz-json-1.1"
	ContentTypeJSON   = "application/json"
	ContentTypeCBOR11 = "application/x-amz-cbor-1.1"
)

var JSON11 Codec = jsonCodec{}

func (jsonCodec) ContentType() string { return ContentTypeJSON11 }

// Decode reports a body that is not a JSON object, or not JSON at all, with
// the bare SerializationException of the pre-dispatch checks (step 5 there
// looks only at the first byte on the common path, and leaves the rest to
// this decoder); member type errors are worded as AWS words them.
func (jsonCodec) Decode(body []byte, v any) *Error {
	if !isJSONObject(body) {
		return SerializationError("")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return SerializationError(typeErrorMessage(te))
	}
	return SerializationError("")
}

// isJSONObject reports whether body's first non-blank byte opens an object.
// It does not check the rest of the text.
func isJSONObject(body []byte) bool {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// typeErrorMessage words a JSON kind mismatch the way AWS's deserializer does,
// from the target's Go kind and the JSON value's kind.
func typeErrorMessage(te *json.UnmarshalTypeError) string {
	t := te.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	jsonKind := te.Value
	scalar := jsonKind != "object" && jsonKind != "array"
	switch t.Kind() {
	case reflect.String:
		switch {
		case jsonKind == "object":
			return msgStartOfStruct
		case jsonKind == "array":
			return msgStartOfList
		case jsonKind == "bool":
			return "class java.lang.Boolean can not be converted to an String"
		}
		return "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"
	case reflect.Slice:
		if scalar {
			return "Expected list or null"
		}
		return msgStartOfStruct
	case reflect.Map:
		if scalar {
			return "Expected map or null"
		}
		return msgStartOfList
	case reflect.Struct:
		if scalar {
			return "Expected null"
		}
		return msgStartOfList
	}
	return "Unexpected " + jsonKind + " value"
}

func (jsonCodec) Encode(v any) ([]byte, error) {
	if a, ok := v.(JSONAppender); ok {
		return a.AppendJSON(make([]byte, 0, 256)), nil
	}
	return json.Marshal(v)
}

// EncodeError renders {"__type":..., "message":...} ("Message" for a
// SerializationException); the message is left out when AWS sends none
// (e.g. UnknownOperationException).
func (jsonCodec) EncodeError(e *Error) []byte {
	b := append(make([]byte, 0, 64+len(e.Message)), `{"__type":`...)
	b = AppendString(b, e.Type)
	if e.Message != "" {
		b = append(b, `,"`...)
		b = append(b, messageKey(e.Type)...)
		b = append(b, `":`...)
		b = AppendString(b, e.Message)
	}
	return append(b, '}')
}
