package api

import "regexp"

// streamARN is the ARN AWS gives a stream.
func streamARN(region, account, name string) string {
	return "arn:aws:kinesis:" + region + ":" + account + ":stream/" + name
}

// arnParts is a parsed stream ARN.
type arnParts struct {
	region, account, name string
}

// arnPattern is AWS's StreamARN pattern as a full match, with the region,
// account and name captured. Like Java's (and RE2's leftmost-first) greedy
// matching, the account is the last ":<12 digits>:stream/" in the string.
var arnPattern = regexp.MustCompile(`^arn:aws.*:kinesis:(.*):(\d{12}):stream/(\S+)$`)

// parseStreamARN matches arn:aws.*:kinesis:.*:\d{12}:stream/\S+ and splits out
// region, account and stream name.
func parseStreamARN(s string) (arnParts, bool) {
	m := arnPattern.FindStringSubmatch(s)
	if m == nil {
		return arnParts{}, false
	}
	return arnParts{region: m[1], account: m[2], name: m[3]}, true
}

// resolveStream turns the StreamName/StreamARN pair every stream-targeted
// operation accepts into a stream name. Both have passed model validation.
// An ARN naming another account is a stream that does not exist here.
func (s *Server) resolveStream(name, arn *string) (string, error) {
	if arn == nil {
		if name == nil {
			return "", invalidArgument("Either StreamName or StreamARN must be provided.")
		}
		return *name, nil
	}
	parts, _ := parseStreamARN(*arn)
	if name != nil && *name != parts.name {
		return "", invalidArgument("StreamName " + *name + " and StreamARN " + *arn + " do not refer to the same stream.")
	}
	if parts.account != s.cfg.AccountID || !isName(parts.name) || len(parts.name) > 128 {
		return "", clientError(typeResourceNotFound, "Stream "+parts.name+" under account "+parts.account+" not found.")
	}
	return parts.name, nil
}

// arnFor renders the ARN of a stream of this account in the request's region.
func (s *Server) arnFor(rc *reqCtx, name string) string {
	return streamARN(rc.region, s.cfg.AccountID, name)
}
