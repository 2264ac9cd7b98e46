package api

import (
	"errors"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// errorTable is the one place where storage's sentinel errors become AWS error
// types. Messages come from storage.Error.Msg, which is already AWS's wording.
var errorTable = []struct {
	kind error
	typ  string
}{
	{storage.ErrStreamNotFound, wire.TypeResourceNotFound},
	{storage.ErrShardNotFound, wire.TypeResourceNotFound},
	{storage.ErrStreamExists, wire.TypeResourceInUse},
	{storage.ErrResourceInUse, wire.TypeResourceInUse},
	{storage.ErrInvalidArgument, wire.TypeInvalidArgument},
	{storage.ErrLimitExceeded, wire.TypeLimitExceeded},
	{storage.ErrThrottled, wire.TypeThroughput},
	{storage.ErrExpired, wire.TypeExpiredIterator},
	{storage.ErrValidation, wire.TypeValidation},
}

// internalCauses are storage failures that are the server's fault: they become
// InternalFailure (500) with a message naming the cause.
var internalCauses = []error{storage.ErrShardReadOnly, storage.ErrDiskFull, storage.ErrClosed}

// toAPIError maps any error to what the client sees. Unknown errors are
// InternalFailure; their text names the cause but they are never a panic.
func toAPIError(err error) *wire.Error {
	var ae *wire.Error
	if errors.As(err, &ae) {
		return ae
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			return wire.ClientError(row.typ, storage.Message(err))
		}
	}
	return internalFailure(err)
}

func internalFailure(err error) *wire.Error { return wire.InternalFailure(internalCause(err)) }

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
		return wire.TypeThroughput, storage.Message(err)
	}
	cause, _ := knownCause(err)
	return wire.TypeInternalFailure, wire.InternalFailure(cause).Message
}

// errResultCount means the Backend broke its contract of one result per entry.
var errResultCount = errors.New("storage returned a result count different from the record count")
