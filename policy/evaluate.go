package policy

import "strings"

// Principal is who makes a request.
type Principal struct {
	Account string // 12-digit account id
	ARN     string // e.g. arn:aws:iam::111122223333:user/alice
}

// Request is one authorization question: may Principal perform Action
// (service:Operation) on Resource (an ARN, or "*" for account-level
// actions)?
type Request struct {
	Principal Principal
	Action    string
	Resource  string
}

// Decision is a document's, or the evaluation's, answer.
type Decision int

const (
	// NotApplicable: no statement matches (an implicit deny).
	NotApplicable Decision = iota
	Allowed
	Denied
)

// Decide evaluates one document on its own: Denied if a matching statement
// denies, else Allowed if one allows, else NotApplicable.
func (d *Document) Decide(req Request) Decision {
	out := NotApplicable
	for i := range d.Statements {
		st := &d.Statements[i]
		if !st.applies(req) {
			continue
		}
		if st.Effect == Deny {
			return Denied
		}
		out = Allowed
	}
	return out
}

// applies reports whether the statement matches the request. Conditions are
// not evaluated: an Allow with one never applies, a Deny with one always
// does (see the package doc).
func (st *Statement) applies(req Request) bool {
	if !st.matchesAction(req.Action) || !st.matchesResource(req.Resource) || !st.matchesPrincipal(req.Principal) {
		return false
	}
	return !st.HasCondition || st.Effect == Deny
}

func (st *Statement) matchesAction(action string) bool {
	if st.Actions != nil {
		return anyMatch(st.Actions, action, true)
	}
	return !anyMatch(st.NotActions, action, true)
}

// matchesResource: a resource policy statement without Resource means the
// resource it is attached to.
func (st *Statement) matchesResource(res string) bool {
	switch {
	case st.Resources != nil:
		return anyMatch(st.Resources, res, false)
	case st.NotResources != nil:
		return !anyMatch(st.NotResources, res, false)
	}
	return true
}

func (st *Statement) matchesPrincipal(p Principal) bool {
	switch {
	case !st.HasPrincipal:
		return true // identity policy: its holder
	case st.Principals != nil:
		for _, e := range st.Principals {
			if names(e, p, st.Effect) {
				return true
			}
		}
		return false
	}
	for _, e := range st.NotPrincipals {
		if names(e, p, st.Effect) {
			return false
		}
	}
	return true
}

// names reports whether a principal entry names p. An account entry (its id
// or its root ARN) in an Allow delegates to the account, as IAM does: it
// names only the account's root, and the account's users need identity
// policies of their own. In a Deny it names everyone in the account.
func names(entry string, p Principal, eff Effect) bool {
	switch {
	case entry == "*":
		return true
	case entry == p.ARN:
		return true
	case entry == p.Account || entry == rootARN(entry, p.Account):
		return eff == Deny || p.ARN == rootARN(entry, p.Account)
	}
	return false
}

// rootARN is the account's root ARN in entry's partition (aws when entry is
// not an ARN).
func rootARN(entry, account string) string {
	partition := "aws"
	if parts := strings.SplitN(entry, ":", 3); len(parts) == 3 && parts[0] == "arn" {
		partition = parts[1]
	}
	return "arn:" + partition + ":iam::" + account + ":root"
}

func anyMatch(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if Match(strings.ToLower(p), strings.ToLower(s)) {
				return true
			}
		} else if Match(p, s) {
			return true
		}
	}
	return false
}

// Match reports whether s matches pattern, where '*' matches any run of
// characters (including none) and '?' exactly one. It runs in
// O(len(pattern)*len(s)) at worst: a '*' is retried only from the last one.
func Match(pattern, s string) bool {
	pr, sr := []rune(pattern), []rune(s)
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(sr) {
		switch {
		case p < len(pr) && (pr[p] == '?' || pr[p] == sr[i]):
			p++
			i++
		case p < len(pr) && pr[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pr) && pr[p] == '*' {
		p++
	}
	return p == len(pr)
}

// DeniedBy says which kind of policy decided a denial.
type DeniedBy int

const (
	// NoAllow: nothing allows (the implicit deny).
	NoAllow DeniedBy = iota
	// IdentityDeny: an identity-based policy denies explicitly.
	IdentityDeny
	// ResourceDeny: the resource-based policy denies explicitly.
	ResourceDeny
)

// Result is Evaluate's answer; By is meaningful only when !Allowed.
type Result struct {
	Allowed bool
	By      DeniedBy
}

// Evaluate is IAM's same-account evaluation: an explicit Deny in any policy
// wins; otherwise the request is allowed if an identity policy or the
// resource policy (nil when there is none) allows it; otherwise it is
// implicitly denied.
func Evaluate(identity []*Document, resource *Document, req Request) Result {
	allowed := false
	for _, d := range identity {
		switch d.Decide(req) {
		case Denied:
			return Result{By: IdentityDeny}
		case Allowed:
			allowed = true
		}
	}
	if resource != nil {
		switch resource.Decide(req) {
		case Denied:
			return Result{By: ResourceDeny}
		case Allowed:
			allowed = true
		}
	}
	return Result{Allowed: allowed}
}
