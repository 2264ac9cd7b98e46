package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
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

type jsonCodec struct{ ct string }

const (
	ContentTypeJSON11 = "application/x-amz-json-1.1"
	ContentTypeJSON   = "application/json"
	ContentTypeCBOR11 = "application/x-amz-cbor-1.1"
)

var (
	JSON11    Codec = jsonCodec{ct: ContentTypeJSON11}
	jsonPlain Codec = jsonCodec{ct: ContentTypeJSON}
)

// CodecFor picks the codec from Content-Type. application/json is accepted
// leniently as JSON 1.1 (AWS itself answers it with a Coral envelope), and so
// is a missing or unknown type, so curl users get JSON errors they can read.
func CodecFor(contentType string) Codec {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.TrimSpace(strings.ToLower(ct)) {
	case ContentTypeJSON:
		return jsonPlain
	case ContentTypeCBOR11:
		return cborAmz
	}
	return JSON11
}

func (c jsonCodec) ContentType() string { return c.ct }

func (c jsonCodec) Decode(body []byte, v any) *Error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return SerializationError("Request body must be a JSON object")
	}
	err := json.Unmarshal(trimmed, v)
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
	return SerializationError("Malformed JSON: " + err.Error())
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

func (c jsonCodec) Encode(v any) ([]byte, error) {
	if a, ok := v.(JSONAppender); ok {
		return a.AppendJSON(make([]byte, 0, 256)), nil
	}
	return json.Marshal(v)
}

// EncodeError renders {"__type":..., "message":...}; the message is left out
// when AWS sends none (e.g. UnknownOperationException).
func (c jsonCodec) EncodeError(e *Error) []byte {
	b := append(make([]byte, 0, 64+len(e.Message)), `{"__type":`...)
	b = AppendString(b, e.Type)
	if e.Message != "" {
		b = append(b, `,"message":`...)
		b = AppendString(b, e.Message)
	}
	return append(b, '}')
}
