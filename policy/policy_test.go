package policy

import (
	"errors"
	"testing"
)

const (
	acct   = "111122223333"
	alice  = "arn:aws:iam::111122223333:user/alice"
	bob    = "arn:aws:iam::111122223333:user/bob"
	root   = "arn:aws:iam::111122223333:root"
	orders = "arn:aws:kinesis:us-east-1:111122223333:stream/orders"
	logs   = "arn:aws:kinesis:us-east-1:111122223333:stream/logs"
	cons   = "arn:aws:kinesis:us-east-1:111122223333:stream/orders/consumer/app:1700000000"
)

func mustParse(t *testing.T, doc string, k Kind) *Document {
	t.Helper()
	d, err := Parse([]byte(doc), k)
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return d
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "a", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*stream/ord*", orders, true},
		{"arn:aws:kinesis:*:*:stream/*", cons, true},
		{"arn:aws:kinesis:us-east-1:111122223333:stream/orders", orders + "x", false},
		{"a*b*c*d", "axxbxxcxxd", true},
		{"a*b*c*d", "axxbxxcxx", false},
		{"**a", "a", true},
		{"é?", "éü", true},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		kind      Kind
	}{
		{"not json", `{`, Identity},
		{"no statement", `{"Version":"2012-10-17"}`, Identity},
		{"empty list", `{"Statement":[]}`, Identity},
		{"bad version", `{"Version":"2020-01-01","Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}}`, Identity},
		{"bad effect", `{"Statement":{"Effect":"allow","Action":"kinesis:*","Resource":"*"}}`, Identity},
		{"no action", `{"Statement":{"Effect":"Allow","Resource":"*"}}`, Identity},
		{"action and notaction", `{"Statement":{"Effect":"Allow","Action":"kinesis:*","NotAction":"kinesis:Put*","Resource":"*"}}`, Identity},
		{"no prefix", `{"Statement":{"Effect":"Allow","Action":"PutRecord","Resource":"*"}}`, Identity},
		{"no resource in identity", `{"Statement":{"Effect":"Allow","Action":"kinesis:*"}}`, Identity},
		{"principal in identity", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*"}}`, Identity},
		{"no principal in resource", `{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}}`, Resource},
		{"unknown element", `{"Statement":{"Effect":"Allow","Actions":"kinesis:*","Resource":"*"}}`, Identity},
		{"unknown top element", `{"Statements":[]}`, Identity},
		{"service principal", `{"Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"kinesis:*"}}`, Resource},
		{"bad principal", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kinesis:*"}}`, Resource},
		{"wildcard principal arn", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"},"Action":"kinesis:*"}}`, Resource},
		{"empty action", `{"Statement":{"Effect":"Allow","Action":"","Resource":"*"}}`, Identity},
		{"action number", `{"Statement":{"Effect":"Allow","Action":7,"Resource":"*"}}`, Identity},
		{"trailing data", `{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}} {}`, Identity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc), c.kind)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	allowAll := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}`
	user := func(arn string) Principal { return Principal{Account: acct, ARN: arn} }
	cases := []struct {
		name     string
		identity []string
		resource string // "" means none
		who      string
		action   string
		res      string
		want     Result
	}{
		{"no policies", nil, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"allow all", []string{allowAll}, "", alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"action case-insensitive", []string{`{"Statement":{"Effect":"Allow","Action":"KINESIS:putrecord","Resource":"*"}}`}, "", alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"action wildcard", []string{`{"Statement":{"Effect":"Allow","Action":["kinesis:Get*","kinesis:Describe*"],"Resource":"*"}}`}, "", alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"action wildcard misses", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:Get*","Resource":"*"}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"action question mark", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:PutRecord?","Resource":"*"}}`}, "", alice, "kinesis:PutRecords", orders, Result{Allowed: true}},
		{"star action", []string{`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`}, "", alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"other service", []string{`{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"resource exact", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"` + orders + `"}}`}, "", alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"resource other stream", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"` + orders + `"}}`}, "", alice, "kinesis:PutRecord", logs, Result{By: NoAllow}},
		{"resource case-sensitive", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"arn:aws:kinesis:us-east-1:111122223333:stream/ORDERS"}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"resource wildcard consumer", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:SubscribeToShard","Resource":"arn:aws:kinesis:*:111122223333:stream/orders/consumer/*"}}`}, "", alice, "kinesis:SubscribeToShard", cons, Result{Allowed: true}},
		{"stream pattern misses consumer", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"arn:aws:kinesis:*:*:stream/orders"}}`}, "", alice, "kinesis:SubscribeToShard", cons, Result{By: NoAllow}},
		{"star resource for account action", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:ListStreams","Resource":"*"}}`}, "", alice, "kinesis:ListStreams", "*", Result{Allowed: true}},
		{"stream resource misses account action", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"arn:aws:kinesis:*:*:stream/*"}}`}, "", alice, "kinesis:ListStreams", "*", Result{By: NoAllow}},
		{"notaction", []string{`{"Statement":{"Effect":"Allow","NotAction":"kinesis:Delete*","Resource":"*"}}`}, "", alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"notaction excludes", []string{`{"Statement":{"Effect":"Allow","NotAction":"kinesis:Delete*","Resource":"*"}}`}, "", alice, "kinesis:DeleteStream", orders, Result{By: NoAllow}},
		{"notresource", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","NotResource":"` + orders + `"}}`}, "", alice, "kinesis:PutRecord", logs, Result{Allowed: true}},
		{"notresource excludes", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","NotResource":"` + orders + `"}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"explicit deny wins in one doc", []string{`{"Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"},{"Effect":"Deny","Action":"kinesis:DeleteStream","Resource":"*"}]}`}, "", alice, "kinesis:DeleteStream", orders, Result{By: IdentityDeny}},
		{"explicit deny wins across docs", []string{allowAll, `{"Statement":{"Effect":"Deny","Action":"kinesis:Put*","Resource":"` + orders + `"}}`}, "", alice, "kinesis:PutRecords", orders, Result{By: IdentityDeny}},
		{"deny elsewhere leaves allow", []string{allowAll, `{"Statement":{"Effect":"Deny","Action":"kinesis:Put*","Resource":"` + logs + `"}}`}, "", alice, "kinesis:PutRecords", orders, Result{Allowed: true}},
		{"allow with condition never applies", []string{`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
		{"deny with condition always applies", []string{allowAll, `{"Statement":{"Effect":"Deny","Action":"kinesis:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}}`}, "", alice, "kinesis:PutRecord", orders, Result{By: IdentityDeny}},
		{"resource policy names user", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + alice + `"},"Action":"kinesis:GetRecords","Resource":"` + orders + `"}}`, alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"resource policy names user list", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":["` + bob + `","` + alice + `"]},"Action":"kinesis:*"}}`, alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"resource policy names another user", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + bob + `"},"Action":"kinesis:*"}}`, alice, "kinesis:GetRecords", orders, Result{By: NoAllow}},
		{"resource policy star", nil, `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:GetRecords"}}`, alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"resource policy AWS star", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kinesis:GetRecords"}}`, alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"resource policy account delegates", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + root + `"},"Action":"kinesis:*"}}`, alice, "kinesis:GetRecords", orders, Result{By: NoAllow}},
		{"resource policy account id delegates", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + acct + `"},"Action":"kinesis:*"}}`, alice, "kinesis:GetRecords", orders, Result{By: NoAllow}},
		{"resource policy account allows root", nil, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + acct + `"},"Action":"kinesis:*"}}`, root, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"account delegation plus identity", []string{allowAll}, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + root + `"},"Action":"kinesis:*"}}`, alice, "kinesis:GetRecords", orders, Result{Allowed: true}},
		{"resource deny of account", []string{allowAll}, `{"Statement":{"Effect":"Deny","Principal":{"AWS":"` + root + `"},"Action":"kinesis:Put*"}}`, alice, "kinesis:PutRecord", orders, Result{By: ResourceDeny}},
		{"resource deny of user", []string{allowAll}, `{"Statement":{"Effect":"Deny","Principal":{"AWS":"` + alice + `"},"Action":"kinesis:*"}}`, alice, "kinesis:PutRecord", orders, Result{By: ResourceDeny}},
		{"resource deny of other user", []string{allowAll}, `{"Statement":{"Effect":"Deny","Principal":{"AWS":"` + bob + `"},"Action":"kinesis:*"}}`, alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"resource deny notprincipal", []string{allowAll}, `{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"` + bob + `"},"Action":"kinesis:*"}}`, alice, "kinesis:PutRecord", orders, Result{By: ResourceDeny}},
		{"resource deny notprincipal spares", []string{allowAll}, `{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"` + alice + `"},"Action":"kinesis:*"}}`, alice, "kinesis:PutRecord", orders, Result{Allowed: true}},
		{"identity deny before resource allow", []string{`{"Statement":{"Effect":"Deny","Action":"kinesis:*","Resource":"*"}}`}, `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}}`, alice, "kinesis:PutRecord", orders, Result{By: IdentityDeny}},
		{"resource policy resource element", nil, `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"` + logs + `"}}`, alice, "kinesis:PutRecord", orders, Result{By: NoAllow}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ids []*Document
			for _, d := range c.identity {
				ids = append(ids, mustParse(t, d, Identity))
			}
			var res *Document
			if c.resource != "" {
				res = mustParse(t, c.resource, Resource)
			}
			got := Evaluate(ids, res, Request{Principal: user(c.who), Action: c.action, Resource: c.res})
			if got != c.want {
				t.Fatalf("Evaluate = %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}`))
	f.Add([]byte(`{"Statement":{"Effect":"Deny","Principal":{"AWS":["111122223333"]},"NotAction":"kinesis:Get*"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []Kind{Identity, Resource} {
			d, err := Parse(b, k)
			if err != nil {
				continue
			}
			d.Decide(Request{Principal: Principal{Account: acct, ARN: alice}, Action: "kinesis:PutRecord", Resource: orders})
		}
	})
}
