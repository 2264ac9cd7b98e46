package wire

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// AWS's model validator reports at most this many violations, and the count
// in the message is the number reported.
const MaxValidationErrors = 10

// Constraint texts, exactly as the Coral validator words them.
const (
	ruleNotNull     = "Member must not be null"
	PatternName     = "[a-zA-Z0-9_.-]+"
	PatternHashKey  = `0|([1-9]\d{0,38})`
	PatternSequence = `0|([1-9]\d{0,128})`
	PatternARN      = `arn:aws.*:kinesis:.*:\d{12}:stream/\S+`
	// PatternConsumerARN is the model's ConsumerARN pattern, as AWS prints it.
	PatternConsumerARN = `^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+`
	// PatternResourceARN is the model's ResourceARN (resource policies): a
	// stream's or a consumer's ARN.
	PatternResourceARN = `arn:aws.*:kinesis:.*:\d{12}:.*stream/\S+`
	// The channel operations' patterns. PatternChannelARN is the one AWS
	// documents; the model's other patterns were never captured, and these
	// are shardlog's (IAM role and S3 bucket ARNs, account IDs as AWS forms
	// them).
	PatternChannelARN = `arn:aws.*:kinesis:.*:\d{12}:channel/\S+`
	PatternRoleARN    = `arn:aws.*:iam::\d{12}:role/\S+`
	PatternBucketARN  = `arn:aws.*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]`
	PatternAccountID  = `\d{12}`
)

// Validator collects model-constraint violations in AWS's format:
// "Value {v} at '{path}' failed to satisfy constraint: {rule}". Checks run in
// the order AWS reports them (field order of the shape, then rule order).
type Validator struct {
	errs []string
}

func (v *Validator) Fail(value, path, rule string) {
	if len(v.errs) < MaxValidationErrors {
		v.errs = append(v.errs, "Value "+value+" at '"+path+"' failed to satisfy constraint: "+rule)
	}
}

// Full reports that no more violations will be recorded, so checking can stop.
func (v *Validator) Full() bool { return len(v.errs) == MaxValidationErrors }

// Err returns the ValidationException, or nil when every check passed.
func (v *Validator) Err() error {
	n := len(v.errs)
	if n == 0 {
		return nil
	}
	plural := ""
	if n > 1 {
		plural = "s"
	}
	return ClientError(TypeValidation, strconv.Itoa(n)+" validation error"+plural+" detected: "+strings.Join(v.errs, "; "))
}

func Quoted(s string) string { return "'" + s + "'" }

// JavaLen is String.length() in Java, which the Coral validator uses: UTF-16
// code units, so a character outside the BMP counts twice.
func JavaLen(s string) int {
	n := 0
	for _, r := range s {
		if utf16.RuneLen(r) == 2 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// NotNull reports a missing required member; it returns whether it was present.
func (v *Validator) NotNull(path string, present bool) bool {
	if !present {
		v.Fail("null", path, ruleNotNull)
	}
	return present
}

// Str checks an optional string member: length bounds (max < 0 means none)
// and, if pattern is not "", the pattern. Rules are checked in AWS's order:
// pattern, then minimum length, then maximum length.
func (v *Validator) Str(path string, s *string, pattern string, min, max int) {
	if s == nil {
		return
	}
	if pattern != "" && !matchPattern(pattern, *s) {
		v.Fail(Quoted(*s), path, "Member must satisfy regular expression pattern: "+pattern)
	}
	v.Length(Quoted(*s), path, JavaLen(*s), min, max)
}

func (v *Validator) Length(value, path string, n, min, max int) {
	if n < min {
		v.Fail(value, path, "Member must have length greater than or equal to "+strconv.Itoa(min))
	}
	if max >= 0 && n > max {
		v.Fail(value, path, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
}

// ReqStr is Str for a required member.
func (v *Validator) ReqStr(path string, s *string, pattern string, min, max int) {
	if v.NotNull(path, s != nil) {
		v.Str(path, s, pattern, min, max)
	}
}

// IntRange checks an optional integer member against inclusive bounds.
func (v *Validator) IntRange(path string, n OptInt, min, max int64) {
	if !n.Set {
		return
	}
	val := Quoted(strconv.FormatInt(n.Val, 10))
	if n.Val < min {
		v.Fail(val, path, "Member must have value greater than or equal to "+strconv.FormatInt(min, 10))
	}
	if n.Val > max {
		v.Fail(val, path, "Member must have value less than or equal to "+strconv.FormatInt(max, 10))
	}
}

// Enum checks an optional member against AWS's value set; values are listed
// in the order AWS prints them.
func (v *Validator) Enum(path string, s *string, values []string) {
	if s == nil {
		return
	}
	for _, x := range values {
		if *s == x {
			return
		}
	}
	v.Fail(Quoted(*s), path, "Member must satisfy enum value set: ["+strings.Join(values, ", ")+"]")
}

// StreamName and StreamARN are the two stream selectors every stream-targeted
// operation accepts.
func (v *Validator) StreamName(path string, s *string) { v.Str(path, s, PatternName, 1, 128) }
func (v *Validator) StreamARN(path string, s *string)  { v.Str(path, s, PatternARN, 1, 2048) }

// ConsumerARN checks an optional ConsumerARN member.
func (v *Validator) ConsumerARN(path string, s *string) { v.Str(path, s, PatternConsumerARN, 1, 2048) }

// TagMap checks a TagMap: 1..200 entries, keys 1..128, values 0..256.
func (v *Validator) TagMap(path string, m map[string]string, present bool) {
	if !present {
		return
	}
	val := Quoted(RenderMap(m))
	v.Length(val, path, len(m), 1, 200)
	keysOK, valuesOK := true, true
	for k, x := range m {
		keysOK = keysOK && JavaLen(k) >= 1 && JavaLen(k) <= 128
		valuesOK = valuesOK && JavaLen(x) <= 256
	}
	if !keysOK {
		v.Fail(val, path, "Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]")
	}
	if !valuesOK {
		v.Fail(val, path, "Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]")
	}
}

// StrList checks a list of strings: its length, then its members' lengths.
// AWS reports the members once, at the list, with the whole list as the
// value and both bounds in the brackets (maximum first), however many fail.
func (v *Validator) StrList(path string, l []string, min, max, memberMin, memberMax int) {
	val := Quoted(RenderList(l))
	v.Length(val, path, len(l), min, max)
	for _, s := range l {
		if n := JavaLen(s); n < memberMin || n > memberMax {
			v.Fail(val, path, "Member must satisfy constraint: [Member must have length less than or equal to "+itoa(memberMax)+
				", Member must have length greater than or equal to "+itoa(memberMin)+"]")
			return
		}
	}
}

// EnumList checks a list of enum values: its length, then its members.
// As with StrList, AWS reports the members once, at the list, with the
// whole list as the value; the rule nests the member's enum rule
// ("Member must satisfy constraint: [Member must satisfy enum value set:
// [...]]"), values listed in the order given.
func (v *Validator) EnumList(path string, l []string, min, max int, values []string) {
	val := Quoted(RenderList(l))
	v.Length(val, path, len(l), min, max)
	for _, s := range l {
		if !slices.Contains(values, s) {
			v.Fail(val, path, "Member must satisfy constraint: [Member must satisfy enum value set: ["+strings.Join(values, ", ")+"]]")
			return
		}
	}
}

// RenderMap prints a map as Java's AbstractMap.toString does, keys sorted so
// the message is deterministic.
func RenderMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// RenderList prints a list of strings as Java's List.toString does: members
// unquoted, joined by ", ".
func RenderList(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

// maxRenderedEntries bounds RenderPutRecordsEntries: a body at the size cap
// can hold millions of {} entries, and AWS's rendering would make a message
// 20 times the body's size. Past this many entries shardlog ends the list
// with ", ...]" (no client can rely on the rest).
const maxRenderedEntries = 10000

// RenderPutRecordsEntries prints n PutRecords entries as Java's
// List.toString does: "[]", or each entry's Object.toString joined by ", ".
// The hash after '@' is the entry's Java hashCode, which depends on its
// contents in ways shardlog cannot reproduce; c965e310 is the one AWS
// returned for entries {"PartitionKey":"","Data":""} and stands in for every
// entry. Captured from AWS responses; unverified against the current service.
func RenderPutRecordsEntries(n int) string {
	const entry = "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"
	shown := min(n, maxRenderedEntries)
	var b strings.Builder
	b.Grow(2 + shown*(len(entry)+2) + 5)
	b.WriteByte('[')
	for i := range shown {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(entry)
	}
	if n > shown {
		b.WriteString(", ...")
	}
	b.WriteByte(']')
	return b.String()
}

func RenderBlob(n int) string {
	s := strconv.Itoa(n)
	return "'java.nio.HeapByteBuffer[pos=0 lim=" + s + " cap=" + s + "]'"
}

// matchPattern implements the handful of model patterns by hand: they are on
// the hot path and Java's full-match semantics are easy to get exactly right.
func matchPattern(pattern, s string) bool {
	switch pattern {
	case PatternName:
		return IsName(s)
	case PatternHashKey:
		return IsDecimal(s, 39)
	case PatternSequence:
		return IsDecimal(s, 129)
	case PatternARN:
		_, ok := ParseStreamARN(s)
		return ok
	case PatternConsumerARN:
		_, ok := ParseConsumerARN(s)
		return ok
	case PatternResourceARN:
		return resourceARNPattern.MatchString(s)
	case PatternChannelARN, PatternRoleARN, PatternBucketARN, PatternAccountID:
		return channelPatterns[pattern].MatchString(s)
	}
	panic("api: unknown pattern " + pattern)
}

// IsName matches [a-zA-Z0-9_.-]+.
func IsName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// IsDecimal matches 0|([1-9]\d{0,maxDigits-1}).
func IsDecimal(s string, maxDigits int) bool {
	if s == "" || len(s) > maxDigits || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidTagText reports whether a tag key or value uses only the characters AWS
// allows: Unicode letters, digits, white space, and _ . / = + - % @ :. White
// space is Unicode category Z (U+0020, U+00A0, ...): AWS refuses tab,
// newline and CR (captured from AWS responses; unverified against the
// current service). ':' is not in AWS's list; no capture covers it, so it
// stays allowed.
func ValidTagText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !isTagRune(r) {
			return false
		}
	}
	return true
}

func itoa(i int) string { return strconv.Itoa(i) }

func isTagRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Z, r) || unicode.IsMark(r) || strings.ContainsRune("_./=+-%@:", r)
}
