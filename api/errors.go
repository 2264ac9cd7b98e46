package api

import (
	"errors"
	"net/http"

	"github.com/shardlog/shardlog/storage"
)

// AWS error type names used by this package.
const (
	typeAccessDenied        = "AccessDeniedException"
	typeUnknownOperation    = "UnknownOperationException"
	typeMissingAuth         = "MissingAuthenticationTokenException"
	typeIncompleteSignature = "IncompleteSignatureException"
	typeInvalidSignature    = "InvalidSignatureException"
	typeSerialization       = "SerializationException"
	typeValidation          = "ValidationException"
	typeInvalidArgument     = "InvalidArgumentException"
	typeResourceNotFound    = "ResourceNotFoundException"
	typeResourceInUse       = "ResourceInUseException"
	typeLimitExceeded       = "LimitExceededException"
	typeThroughput          = "ProvisionedThroughputExceededException"
	typeExpiredIterator     = "ExpiredIteratorException"
	typeExpiredNextToken    = "ExpiredNextTokenException"
	typeInternalFailure     = "InternalFailure"
	typeTooLarge            = "RequestEntityTooLargeException"
)

// apiError is an error as the client sees it: AWS's __type, message and HTTP
// status. Every failure leaves the handler as one of these.
type apiError struct {
	Type    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func clientError(typ, msg string) *apiError {
	return &apiError{Type: typ, Message: msg, Status: http.StatusBadRequest}
}

func invalidArgument(msg string) *apiError { return clientError(typeInvalidArgument, msg) }

func serializationError(msg string) *apiError { return clientError(typeSerialization, msg) }

// errorTable is the one place where storage's sentinel errors become AWS error
// types. Messages come from storage.Error.Msg, which is already AWS's wording.
var errorTable = []struct {
	kind error
	typ  string
}{
	{storage.ErrStreamNotFound, typeResourceNotFound},
	{storage.ErrShardNotFound, typeResourceNotFound},
	{storage.ErrStreamExists, typeResourceInUse},
	{storage.ErrResourceInUse, typeResourceInUse},
	{storage.ErrInvalidArgument, typeInvalidArgument},
	{storage.ErrLimitExceeded, typeLimitExceeded},
	{storage.ErrThrottled, typeThroughput},
	{storage.ErrExpired, typeExpiredIterator},
	{storage.ErrValidation, typeValidation},
}

// internalCauses are storage failures that are the server's fault: they become
// InternalFailure (500) with a message naming the cause.
var internalCauses = []error{storage.ErrShardReadOnly, storage.ErrDiskFull, storage.ErrClosed}

// toAPIError maps any error to what the client sees. Unknown errors are
// InternalFailure; their text names the cause but they are never a panic.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			return clientError(row.typ, storage.Message(err))
		}
	}
	return internalFailure(err)
}

func internalFailure(err error) *apiError {
	return &apiError{Type: typeInternalFailure, Message: "Internal Service Failure: " + internalCause(err), Status: http.StatusInternalServerError}
}

func internalCause(err error) string {
	if cause, ok := knownCause(err); ok {
		return cause
	}
	return storage.Message(err)
}

// knownCause names err's server-side cause if it is one of internalCauses.
func knownCause(err error) (string, bool) {
	for _, kind := range internalCauses {
		if errors.Is(err, kind) {
			return kind.Error(), true
		}
	}
	return "", false
}

// recordErrorCode is the PutRecords per-record ErrorCode/ErrorMessage for err:
// throttling keeps storage's message (it names account, stream and shard);
// anything else is InternalFailure "Internal Service Failure" as AWS sends it,
// followed by the cause when it is a known server-side one (disk full, a
// read-only shard), so an operator can act on it.
func recordErrorCode(err error) (code, msg string) {
	if errors.Is(err, storage.ErrThrottled) {
		return typeThroughput, storage.Message(err)
	}
	if cause, ok := knownCause(err); ok {
		return typeInternalFailure, "Internal Service Failure: " + cause
	}
	return typeInternalFailure, "Internal Service Failure"
}

// errResultCount means the Backend broke its contract of one result per entry.
var errResultCount = errors.New("storage returned a result count different from the record count")
