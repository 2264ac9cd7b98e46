package api

import (
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
)

// resolveStream turns the StreamName/StreamARN pair every stream-targeted
// operation accepts into a stream name. Both have passed model validation.
// An ARN naming another account is a stream that does not exist here.
func (s *Server) resolveStream(sel wire.StreamSelector) (string, error) {
	name, arn := sel.StreamName, sel.StreamARN
	if arn == nil {
		if name == nil {
			return "", wire.InvalidArgument("Either StreamName or StreamARN must be provided.")
		}
		return *name, nil
	}
	parts, _ := wire.ParseStreamARN(*arn)
	if name != nil && *name != parts.Name {
		return "", wire.InvalidArgument("StreamName " + *name + " and StreamARN " + *arn + " do not refer to the same stream.")
	}
	if parts.Account != s.account || !wire.IsName(parts.Name) || len(parts.Name) > 128 {
		return "", reasonError(wire.TypeResourceNotFound, storage.ReasonStreamNotFound, storage.Facts{Account: parts.Account, Stream: parts.Name})
	}
	return parts.Name, nil
}

// arnFor renders the ARN of a stream of this account in the request's region.
func (s *Server) arnFor(rc *reqCtx, name string) string {
	return wire.FormatStreamARN(rc.region, s.account, name)
}
