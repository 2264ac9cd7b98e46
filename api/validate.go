package api

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// AWS's model validator reports at most this many violations, and the count
// in the message is the number reported.
const maxValidationErrors = 10

// Constraint texts, exactly as the Coral validator words them.
const (
	ruleNotNull     = "Member must not be null"
	patternName     = "[a-zA-Z0-9_.-]+"
	patternHashKey  = `0|([1-9]\d{0,38})`
	patternSequence = `0|([1-9]\d{0,128})`
	patternARN      = `arn:aws.*:kinesis:.*:\d{12}:stream/\S+`
)

// validator collects model-constraint violations in AWS's format:
// "Value {v} at '{path}' failed to satisfy constraint: {rule}". Checks run in
// the order AWS reports them (field order of the shape, then rule order).
type validator struct {
	errs []string
}

func (v *validator) fail(value, path, rule string) {
	if len(v.errs) < maxValidationErrors {
		v.errs = append(v.errs, "Value "+value+" at '"+path+"' failed to satisfy constraint: "+rule)
	}
}

// err returns the ValidationException, or nil when every check passed.
func (v *validator) err() error {
	n := len(v.errs)
	if n == 0 {
		return nil
	}
	plural := ""
	if n > 1 {
		plural = "s"
	}
	return clientError(typeValidation, strconv.Itoa(n)+" validation error"+plural+" detected: "+strings.Join(v.errs, "; "))
}

func quoted(s string) string { return "'" + s + "'" }

// javaLen is String.length() in Java, which the Coral validator uses: UTF-16
// code units, so a character outside the BMP counts twice.
func javaLen(s string) int {
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

// notNull reports a missing required member; it returns whether it was present.
func (v *validator) notNull(path string, present bool) bool {
	if !present {
		v.fail("null", path, ruleNotNull)
	}
	return present
}

// str checks an optional string member: length bounds (max < 0 means none)
// and, if pattern is not "", the pattern. Rules are checked in AWS's order:
// pattern, then minimum length, then maximum length.
func (v *validator) str(path string, s *string, pattern string, min, max int) {
	if s == nil {
		return
	}
	if pattern != "" && !matchPattern(pattern, *s) {
		v.fail(quoted(*s), path, "Member must satisfy regular expression pattern: "+pattern)
	}
	v.length(quoted(*s), path, javaLen(*s), min, max)
}

func (v *validator) length(value, path string, n, min, max int) {
	if n < min {
		v.fail(value, path, "Member must have length greater than or equal to "+strconv.Itoa(min))
	}
	if max >= 0 && n > max {
		v.fail(value, path, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
}

// reqStr is str for a required member.
func (v *validator) reqStr(path string, s *string, pattern string, min, max int) {
	if v.notNull(path, s != nil) {
		v.str(path, s, pattern, min, max)
	}
}

// intRange checks an optional integer member against inclusive bounds.
func (v *validator) intRange(path string, n optInt, min, max int64) {
	if !n.Set {
		return
	}
	val := quoted(strconv.FormatInt(n.Val, 10))
	if n.Val < min {
		v.fail(val, path, "Member must have value greater than or equal to "+strconv.FormatInt(min, 10))
	}
	if n.Val > max {
		v.fail(val, path, "Member must have value less than or equal to "+strconv.FormatInt(max, 10))
	}
}

// enum checks an optional member against AWS's value set; values are listed
// in the order AWS prints them.
func (v *validator) enum(path string, s *string, values []string) {
	if s == nil {
		return
	}
	for _, x := range values {
		if *s == x {
			return
		}
	}
	v.fail(quoted(*s), path, "Member must satisfy enum value set: ["+strings.Join(values, ", ")+"]")
}

// streamName and streamARN are the two stream selectors every stream-targeted
// operation accepts.
func (v *validator) streamName(path string, s *string) { v.str(path, s, patternName, 1, 128) }
func (v *validator) streamARN(path string, s *string)  { v.str(path, s, patternARN, 1, 2048) }

// tagMap checks a TagMap: 1..200 entries, keys 1..128, values 0..256.
func (v *validator) tagMap(path string, m map[string]string, present bool) {
	if !present {
		return
	}
	val := quoted(renderMap(m))
	v.length(val, path, len(m), 1, 200)
	keysOK, valuesOK := true, true
	for k, x := range m {
		keysOK = keysOK && javaLen(k) >= 1 && javaLen(k) <= 128
		valuesOK = valuesOK && javaLen(x) <= 256
	}
	if !keysOK {
		v.fail(val, path, "Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]")
	}
	if !valuesOK {
		v.fail(val, path, "Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]")
	}
}

// renderMap prints a map as Java's AbstractMap.toString does, keys sorted so
// the message is deterministic.
func renderMap(m map[string]string) string {
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

func renderList(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

func renderBlob(n int) string {
	s := strconv.Itoa(n)
	return "'java.nio.HeapByteBuffer[pos=0 lim=" + s + " cap=" + s + "]'"
}

// matchPattern implements the handful of model patterns by hand: they are on
// the hot path and Java's full-match semantics are easy to get exactly right.
func matchPattern(pattern, s string) bool {
	switch pattern {
	case patternName:
		return isName(s)
	case patternHashKey:
		return isDecimal(s, 39)
	case patternSequence:
		return isDecimal(s, 129)
	case patternARN:
		_, ok := parseStreamARN(s)
		return ok
	}
	panic("api: unknown pattern " + pattern)
}

// isName matches [a-zA-Z0-9_.-]+.
func isName(s string) bool {
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

// isDecimal matches 0|([1-9]\d{0,maxDigits-1}).
func isDecimal(s string, maxDigits int) bool {
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

// validTagText reports whether a tag key or value uses only the characters AWS
// allows: Unicode letters, digits, white space, and _ . / = + - % @ :.
func validTagText(s string) bool {
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
