// Package policy parses and evaluates IAM policy documents, as AWS IAM does
// for one service's actions within one account. It is pure: no I/O, no
// shardlog imports.
//
// Supported: Version ("2012-10-17" or "2008-10-17", optional), Statement (an
// object or a list), Sid, Effect (Allow, Deny), Action/NotAction,
// Resource/NotResource, and Principal/NotPrincipal in resource policies
// ("*", {"AWS": "*" | account id | "arn:aws:iam::ACCOUNT:root" | user ARN},
// each a string or a list). Actions match case-insensitively, resources
// case-sensitively; both take the wildcards '*' (any run of characters) and
// '?' (one character).
//
// Conditions are not evaluated. To fail closed, an Allow statement with a
// Condition never applies and a Deny statement with a Condition always
// applies. Policy variables (${aws:username}) are matched literally.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every parse failure.
var ErrInvalid = errors.New("invalid policy document")

// Document is a parsed policy.
type Document struct {
	Statements []Statement
}

// Statement is one statement. Exactly one of Actions/NotActions and at most
// one of Resources/NotResources is set (Parse checks); Principals or
// NotPrincipals only in resource policies.
type Statement struct {
	Sid           string
	Effect        Effect
	Actions       []string
	NotActions    []string
	Resources     []string
	NotResources  []string
	Principals    []string // AWS principals; "*" is anyone
	NotPrincipals []string
	HasPrincipal  bool // Principal or NotPrincipal was given
	HasCondition  bool
}

// Effect is Allow or Deny.
type Effect string

const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Kind is where a document is attached; it decides which elements it needs.
type Kind int

const (
	// Identity policies are attached to a user; they may not name principals.
	Identity Kind = iota
	// Resource policies are attached to a stream or consumer; every
	// statement names its principals.
	Resource
)

// rawStatement is a statement as JSON has it; list elements may be a string
// or a list of strings.
type rawStatement struct {
	Sid          string          `json:"Sid"`
	Effect       string          `json:"Effect"`
	Action       json.RawMessage `json:"Action"`
	NotAction    json.RawMessage `json:"NotAction"`
	Resource     json.RawMessage `json:"Resource"`
	NotResource  json.RawMessage `json:"NotResource"`
	Principal    json.RawMessage `json:"Principal"`
	NotPrincipal json.RawMessage `json:"NotPrincipal"`
	Condition    json.RawMessage `json:"Condition"`
}

type rawDocument struct {
	Version   string          `json:"Version"`
	ID        string          `json:"Id"`
	Statement json.RawMessage `json:"Statement"`
}

// Parse parses a policy document of the given kind. Errors wrap ErrInvalid
// and say what is wrong.
func Parse(doc []byte, kind Kind) (*Document, error) {
	var raw rawDocument
	if err := strictUnmarshal(doc, &raw); err != nil {
		return nil, invalid("%v", err)
	}
	switch raw.Version {
	case "", "2012-10-17", "2008-10-17":
	default:
		return nil, invalid("unsupported Version %q", raw.Version)
	}
	stmts, err := rawStatements(raw.Statement)
	if err != nil {
		return nil, err
	}
	d := &Document{Statements: make([]Statement, 0, len(stmts))}
	for i, rs := range stmts {
		st, err := parseStatement(rs, kind)
		if err != nil {
			return nil, fmt.Errorf("statement %d: %w", i, err)
		}
		d.Statements = append(d.Statements, st)
	}
	return d, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// strictUnmarshal refuses unknown fields and trailing data, as IAM refuses
// unknown policy elements.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the document")
	}
	return nil
}

func rawStatements(b json.RawMessage) ([]rawStatement, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, invalid("missing Statement")
	}
	if b[0] == '{' {
		var one rawStatement
		if err := strictUnmarshal(b, &one); err != nil {
			return nil, invalid("Statement: %v", err)
		}
		return []rawStatement{one}, nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(b, &many); err != nil {
		return nil, invalid("Statement must be an object or a list of objects")
	}
	if len(many) == 0 {
		return nil, invalid("Statement is empty")
	}
	out := make([]rawStatement, len(many))
	for i, m := range many {
		if err := strictUnmarshal(m, &out[i]); err != nil {
			return nil, invalid("statement %d: %v", i, err)
		}
	}
	return out, nil
}

func parseStatement(rs rawStatement, kind Kind) (Statement, error) {
	st := Statement{Sid: rs.Sid, Effect: Effect(rs.Effect), HasCondition: len(rs.Condition) > 0 && string(rs.Condition) != "null"}
	if st.Effect != Allow && st.Effect != Deny {
		return st, invalid("Effect must be Allow or Deny, not %q", rs.Effect)
	}
	var err error
	if st.Actions, st.NotActions, err = pair(rs.Action, rs.NotAction, "Action", true); err != nil {
		return st, err
	}
	for _, a := range append(append([]string(nil), st.Actions...), st.NotActions...) {
		if a != "*" && !strings.Contains(a, ":") {
			return st, invalid("action %q has no service prefix", a)
		}
	}
	if st.Resources, st.NotResources, err = pair(rs.Resource, rs.NotResource, "Resource", kind == Identity); err != nil {
		return st, err
	}
	return st, parsePrincipals(&st, rs, kind)
}

func parsePrincipals(st *Statement, rs rawStatement, kind Kind) error {
	hasP, hasNP := len(rs.Principal) > 0, len(rs.NotPrincipal) > 0
	st.HasPrincipal = hasP || hasNP
	switch {
	case kind == Identity && st.HasPrincipal:
		return invalid("an identity-based policy may not name a Principal")
	case kind == Resource && !st.HasPrincipal:
		return invalid("a resource-based policy statement must name a Principal")
	case hasP && hasNP:
		return invalid("both Principal and NotPrincipal")
	}
	var err error
	if hasP {
		st.Principals, err = principals(rs.Principal)
	} else if hasNP {
		st.NotPrincipals, err = principals(rs.NotPrincipal)
	}
	return err
}

// pair parses an element and its Not form: exactly one of them, or (when
// not required) neither.
func pair(pos, neg json.RawMessage, name string, required bool) ([]string, []string, error) {
	switch {
	case len(pos) > 0 && len(neg) > 0:
		return nil, nil, invalid("both %s and Not%s", name, name)
	case len(pos) > 0:
		l, err := stringList(pos, name)
		return l, nil, err
	case len(neg) > 0:
		l, err := stringList(neg, "Not"+name)
		return nil, l, err
	case required:
		return nil, nil, invalid("missing %s", name)
	}
	return nil, nil, nil
}

// stringList reads a string or a non-empty list of non-empty strings.
func stringList(b json.RawMessage, name string) ([]string, error) {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if one == "" {
			return nil, invalid("%s is empty", name)
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil || len(many) == 0 {
		return nil, invalid("%s must be a string or a list of strings", name)
	}
	for _, s := range many {
		if s == "" {
			return nil, invalid("%s has an empty element", name)
		}
	}
	return many, nil
}

// principals reads "*" or {"AWS": string | [string]}. Other principal
// types (Service, Federated, CanonicalUser) name no one shardlog
// authenticates, so they are refused rather than silently never matching.
func principals(b json.RawMessage) ([]string, error) {
	var star string
	if err := json.Unmarshal(b, &star); err == nil {
		if star != "*" {
			return nil, invalid("Principal must be \"*\" or an object")
		}
		return []string{"*"}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || len(m) == 0 {
		return nil, invalid("Principal must be \"*\" or an object")
	}
	var out []string
	for typ, v := range m {
		if typ != "AWS" {
			return nil, invalid("unsupported principal type %q", typ)
		}
		l, err := stringList(v, "Principal.AWS")
		if err != nil {
			return nil, err
		}
		for _, p := range l {
			if err := checkPrincipal(p); err != nil {
				return nil, err
			}
		}
		out = append(out, l...)
	}
	return out, nil
}

// checkPrincipal accepts "*", a 12-digit account id, or an IAM ARN
// (arn:PARTITION:iam::ACCOUNT:root|user/NAME|role/NAME); IAM allows no other
// wildcard in a principal.
func checkPrincipal(p string) error {
	if p == "*" || isAccountID(p) {
		return nil
	}
	parts := strings.SplitN(p, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || !isAccountID(parts[4]) ||
		strings.ContainsAny(p, "*?") || parts[5] == "" {
		return invalid("invalid principal %q", p)
	}
	return nil
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
