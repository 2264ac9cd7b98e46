package api

import (
	"errors"
	"net/http"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// errorTable is the one place where storage's sentinel errors become AWS error
// types. Messages come from messages.go.
var errorTable = []struct {
	kind error
	typ  string
}{
	{storage.ErrStreamNotFound, wire.TypeResourceNotFound},
	{storage.ErrShardNotFound, wire.TypeResourceNotFound},
	{storage.ErrConsumerNotFound, wire.TypeResourceNotFound},
	{storage.ErrChannelNotFound, wire.TypeResourceNotFound},
	{storage.ErrStreamExists, wire.TypeResourceInUse},
	{storage.ErrResourceInUse, wire.TypeResourceInUse},
	{storage.ErrInvalidArgument, wire.TypeInvalidArgument},
	{storage.ErrLimitExceeded, wire.TypeLimitExceeded},
	{storage.ErrThrottled, wire.TypeThroughput},
	{storage.ErrExpired, wire.TypeExpiredIterator},
	{storage.ErrValidation, wire.TypeValidation},
	{storage.ErrKMSNotFound, wire.TypeKMSNotFound},
	{storage.ErrKMSDisabled, wire.TypeKMSDisabled},
	{storage.ErrKMSInvalidState, wire.TypeKMSInvalidState},
}

// internalCauses are storage failures that are the server's fault: they become
// InternalFailure (500), whose message names the cause so an operator (or a
// client that retries) knows what happened. Other errors name themselves.
var internalCauses = []struct {
	kind  error
	cause string
}{
	{storage.ErrShardReadOnly, "shard refuses writes"},
	{storage.ErrDiskFull, "no space left on device"},
	{storage.ErrClosed, "store closed"},
	{storage.ErrShardClosed, "the shard was closed by a reshard while the request was on its way; retry it"},
}

// toAPIError maps any error to what the client sees. Unknown errors are
// InternalFailure; their text names the cause but they are never a panic.
// region fills the texts that name it.
func toAPIError(err error, region string) *wire.Error {
	var ae *wire.Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, storage.ErrServiceFault) {
		// AWS's own fault: a 500 InternalFailure worded as AWS words it
		// (often with no message at all), with no shardlog cause appended.
		return &wire.Error{Type: wire.TypeInternalFailure, Message: clientMessage(err, region), Status: http.StatusInternalServerError}
	}
	if errors.Is(err, storage.ErrUnavailable) {
		return &wire.Error{Type: wire.TypeServiceUnavailable, Message: clientMessage(err, region), Status: http.StatusServiceUnavailable}
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			return wire.ClientError(row.typ, clientMessage(err, region))
		}
	}
	return internalFailure(err)
}

// clientMessage words err: a *storage.Error by its Reason; a bare sentinel
// (an Admission hook or another Backend may return one) by its own text.
func clientMessage(err error, region string) string {
	var se *storage.Error
	if errors.As(err, &se) {
		return storageMessage(se, region)
	}
	return err.Error()
}

func internalFailure(err error) *wire.Error {
	if cause, ok := knownCause(err); ok {
		return wire.InternalFailure(cause)
	}
	return wire.InternalFailure(err.Error())
}

// knownCause names err's server-side cause if it is one of internalCauses.
func knownCause(err error) (string, bool) {
	for _, row := range internalCauses {
		if errors.Is(err, row.kind) {
			return row.cause, true
		}
	}
	return "", false
}

// recordErrorCode is the PutRecords per-record ErrorCode/ErrorMessage for err:
// throttling names account, stream and shard as AWS does; anything else is
// InternalFailure "Internal Service Failure" as AWS sends it, followed by the
// cause when it is a known server-side one (disk full, a read-only shard), so
// an operator can act on it.
func recordErrorCode(err error) (code, msg string) {
	if errors.Is(err, storage.ErrThrottled) {
		return wire.TypeThroughput, clientMessage(err, "")
	}
	cause, _ := knownCause(err)
	return wire.TypeInternalFailure, wire.InternalFailure(cause).Message
}

// errResultCount means the Backend broke its contract of one result per entry.
var errResultCount = errors.New("storage returned a result count different from the record count")
