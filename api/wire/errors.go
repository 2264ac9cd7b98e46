package wire

import "net/http"

// AWS error type names (the "__type" of an error body).
const (
	TypeAccessDenied        = "AccessDeniedException"
	TypeUnknownOperation    = "UnknownOperationException"
	TypeMissingAuth         = "MissingAuthenticationTokenException"
	TypeIncompleteSignature = "IncompleteSignatureException"
	TypeInvalidSignature    = "InvalidSignatureException"
	TypeSerialization       = "SerializationException"
	TypeValidation          = "ValidationException"
	TypeInvalidArgument     = "InvalidArgumentException"
	TypeResourceNotFound    = "ResourceNotFoundException"
	TypeResourceInUse       = "ResourceInUseException"
	TypeLimitExceeded       = "LimitExceededException"
	TypeThroughput          = "ProvisionedThroughputExceededException"
	TypeExpiredIterator     = "ExpiredIteratorException"
	TypeExpiredNextToken    = "ExpiredNextTokenException"
	TypeInternalFailure     = "InternalFailure"
	TypeTooLarge            = "RequestEntityTooLargeException"
	TypeKMSNotFound         = "KMSNotFoundException"
	TypeKMSDisabled         = "KMSDisabledException"
	TypeKMSInvalidState     = "KMSInvalidStateException"
	// TypeServiceUnavailable is AWS's common 503 error (every AWS API may
	// answer it); SDKs retry it.
	TypeServiceUnavailable = "ServiceUnavailable"
)

// Error is an error as the client sees it: AWS's __type, message and HTTP
// status. Every failure leaves the server as one of these, encoded by the
// request's Codec.
type Error struct {
	Type    string
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// ClientError is a 400 of type typ.
func ClientError(typ, msg string) *Error {
	return &Error{Type: typ, Message: msg, Status: http.StatusBadRequest}
}

// InvalidArgument is an InvalidArgumentException.
func InvalidArgument(msg string) *Error { return ClientError(TypeInvalidArgument, msg) }

// SerializationError is a SerializationException: the body does not decode.
// An empty msg gives AWS's bare body, {"__type":"SerializationException"}.
func SerializationError(msg string) *Error { return ClientError(TypeSerialization, msg) }

// messageKey is the key of an error body's text: AWS's deserializer writes
// "Message" for a SerializationException, every other type has "message".
func messageKey(typ string) string {
	if typ == TypeSerialization {
		return "Message"
	}
	return "message"
}

// InternalFailure is AWS's 500 "Internal Service Failure", followed by cause
// when there is one to name.
func InternalFailure(cause string) *Error {
	msg := "Internal Service Failure"
	if cause != "" {
		msg += ": " + cause
	}
	return &Error{Type: TypeInternalFailure, Message: msg, Status: http.StatusInternalServerError}
}
