package api

import (
	"context"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// Encrypter is the part of a Backend that encrypts streams at rest;
// *storage.Store has it. Backends without it (test fakes) answer the
// encryption operations UnknownOperationException.
type Encrypter interface {
	// StartEncryption fails with ErrStreamNotFound, ErrResourceInUse (not
	// ACTIVE), the KMS family for keyID (resolved for region) and
	// ErrLimitExceeded (25 key changes per rolling 24 hours).
	StartEncryption(ctx context.Context, stream, keyID, region string) error
	// StopEncryption fails with ErrStreamNotFound and ErrResourceInUse.
	StopEncryption(ctx context.Context, stream, keyID string) error
}

var _ Encrypter = (*storage.Store)(nil)

// encryptionTypes are the model's EncryptionType values; only KMS is valid
// for Start/StopStreamEncryption.
var encryptionTypes = []string{storage.EncryptionNone, storage.EncryptionKMS}

type encryptionInput struct {
	wire.StreamSelector
	EncryptionType *string
	KeyId          *string
}

func (s *Server) startEncryption(rc *reqCtx, body []byte) (any, error) {
	e, name, in, err := s.encryptionRequest(rc, body)
	if err != nil {
		return nil, err
	}
	return nil, e.StartEncryption(rc.ctx, name, *in.KeyId, rc.region)
}

func (s *Server) stopEncryption(rc *reqCtx, body []byte) (any, error) {
	e, name, in, err := s.encryptionRequest(rc, body)
	if err != nil {
		return nil, err
	}
	return nil, e.StopEncryption(rc.ctx, name, *in.KeyId)
}

// encryptionRequest decodes and checks either operation's request: the
// model's constraints (EncryptionType and KeyId required, KeyId of 1 to 2048
// characters), the stream selector, authorization, then EncryptionType KMS.
func (s *Server) encryptionRequest(rc *reqCtx, body []byte) (Encrypter, string, *encryptionInput, error) {
	e, ok := s.b.(Encrypter)
	if !ok {
		return nil, "", nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	var in encryptionInput
	name, err := s.streamRequest(rc, body, &in, func(v *wire.Validator) {
		if v.NotNull("encryptionType", in.EncryptionType != nil) {
			v.Enum("encryptionType", in.EncryptionType, encryptionTypes)
		}
		v.ReqStr("keyId", in.KeyId, "", 1, 2048)
	})
	if err != nil {
		return nil, "", nil, err
	}
	if *in.EncryptionType != storage.EncryptionKMS {
		return nil, "", nil, wire.InvalidArgument(msgEncryptionTypeNone)
	}
	return e, name, &in, nil
}

// encryptionTypeOf is a stream's EncryptionType as DescribeStream reports it:
// NONE unless the Backend says otherwise.
func encryptionTypeOf(info storage.StreamInfo) string {
	if info.EncryptionType == "" {
		return storage.EncryptionNone
	}
	return info.EncryptionType
}
