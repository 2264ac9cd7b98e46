package storage

import "errors"

// Sentinel errors. Every error the Store returns for a caller's mistake or a
// resource state wraps exactly one of these in an *Error; the api package maps
// them to AWS error types (and nowhere else does that mapping happen).
var (
	ErrStreamNotFound  = errors.New("stream not found")
	ErrStreamExists    = errors.New("stream already exists")
	ErrResourceInUse   = errors.New("resource in use") // e.g. stream not ACTIVE for this operation
	ErrShardNotFound   = errors.New("shard not found")
	ErrInvalidArgument = errors.New("invalid argument")     // Msg carries AWS's wording
	ErrLimitExceeded   = errors.New("limit exceeded")       // shard limit, etc.
	ErrThrottled       = errors.New("throughput exceeded")  // per-shard admission control
	ErrShardReadOnly   = errors.New("shard refuses writes") // corrupt, or a failed fsync poisoned it
	ErrExpired         = errors.New("position expired")     // trimmed away by retention
	ErrClosed          = errors.New("store closed")
	ErrDiskFull        = errors.New("no space left on device")
	ErrValidation      = errors.New("validation failed") // e.g. resharding an ON_DEMAND stream
)

// Error is a storage error with a message fit for a client. Kind is one of the
// sentinels above; Msg is AWS's exact wording, including the account id the
// Store was opened with (e.g. "Stream foo under account 000000000000 not
// found."), so the api layer can send it as it is.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, msg string) error { return &Error{Kind: kind, Msg: msg} }

// Message returns the client-facing message of err: Msg for an *Error, or
// err.Error() otherwise.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return err.Error()
}
