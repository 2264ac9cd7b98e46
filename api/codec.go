package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
)

// codec is one wire format: JSON 1.1 (jsonCodec) or CBOR 1.1 (cborCodec). Both
// decode into the same request structs, whose field types (blob, optInt,
// optTime, ...) implement each format's rules, and encode the same outputs.
type codec interface {
	contentType() string
	// decode parses body into v, a pointer to a request struct. Any failure
	// is a SerializationException, worded as AWS words it.
	decode(body []byte, v any) *apiError
	// encode renders an output value or an error body.
	encode(v any) ([]byte, error)
	encodeError(e *apiError) []byte
}

// jsonAppender is implemented by hot-path outputs (PutRecords, GetRecords)
// that render themselves without reflection.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

type jsonCodec struct{ ct string }

const (
	ctJSON11 = "application/x-amz-json-1.1"
	ctJSON   = "application/json"
	ctCBOR11 = "application/x-amz-cbor-1.1"
)

var (
	jsonAmz   codec = jsonCodec{ct: ctJSON11}
	jsonPlain codec = jsonCodec{ct: ctJSON}
)

// codecFor picks the codec from Content-Type. application/json is accepted
// leniently as JSON 1.1 (AWS itself answers it with a Coral envelope), and so
// is a missing or unknown type, so curl users get JSON errors they can read.
func codecFor(contentType string) codec {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.TrimSpace(strings.ToLower(ct)) {
	case ctJSON:
		return jsonPlain
	case ctCBOR11:
		return cborAmz
	}
	return jsonAmz
}

func (c jsonCodec) contentType() string { return c.ct }

func (c jsonCodec) decode(body []byte, v any) *apiError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return serializationError("Request body must be a JSON object")
	}
	err := json.Unmarshal(trimmed, v)
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return serializationError(typeErrorMessage(te))
	}
	return serializationError("Malformed JSON: " + err.Error())
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

func (c jsonCodec) encode(v any) ([]byte, error) {
	if a, ok := v.(jsonAppender); ok {
		return a.appendJSON(make([]byte, 0, 256)), nil
	}
	return json.Marshal(v)
}

// encodeError renders {"__type":..., "message":...}; the message is left out
// when AWS sends none (e.g. UnknownOperationException).
func (c jsonCodec) encodeError(e *apiError) []byte {
	b := append(make([]byte, 0, 64+len(e.Message)), `{"__type":`...)
	b = appendJSONString(b, e.Type)
	if e.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, e.Message)
	}
	return append(b, '}')
}
