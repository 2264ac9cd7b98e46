package api

import (
	"context"
	"sync"

	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/policy"
	"github.com/shardlog/shardlog/storage"
)

// Authorization, IAM-style. Every operation calls admit once it knows its
// resource; admit authorizes before the Admission hook runs. The action is
// "kinesis:" + the operation; the resource is, as AWS's service authorization
// reference lists per action: the stream's ARN for stream operations
// (CreateStream, RegisterStreamConsumer and ListStreamConsumers included),
// the consumer's ARN for DescribeStreamConsumer, DeregisterStreamConsumer and
// SubscribeToShard, the ResourceARN for the resource-policy operations and
// TagResource, UntagResource and ListTagsForResource, and
// "*" for account-level operations (ListStreams, DescribeLimits). Without an
// identity (no --auth-file) everything is allowed.

// PolicyStore is the part of a Backend that keeps resource policies;
// *storage.Store has it. Backends without it (test fakes) answer the policy
// operations UnknownOperationException and have no resource policies.
type PolicyStore interface {
	ResourcePolicy(ctx context.Context, t storage.PolicyTarget) (string, error)
	SetResourcePolicy(ctx context.Context, t storage.PolicyTarget, policy string) error
}

var _ PolicyStore = (*storage.Store)(nil)

// authorize answers AccessDeniedException unless the request's identity may
// perform the operation on req's resource.
func (s *Server) authorize(rc *reqCtx, req AdmissionRequest) error {
	id := rc.identity
	if id == nil {
		return nil
	}
	who := principalOf(id, s.account)
	action := "kinesis:" + rc.op
	res := policy.Evaluate(s.policies.identity(id), s.resourcePolicy(rc, req),
		policy.Request{Principal: who, Action: action, Resource: req.ResourceARN})
	if res.Allowed {
		return nil
	}
	return wire.ClientError(wire.TypeAccessDenied, msgAccessDenied(who.ARN, action, req.ResourceARN, res.By))
}

// principalOf is the identity's IAM principal: its user, or the account's
// root when the credential names no user.
func principalOf(id *auth.Identity, defaultAccount string) policy.Principal {
	acct := id.Account
	if acct == "" {
		acct = defaultAccount
	}
	if id.User == "" {
		return policy.Principal{Account: acct, ARN: "arn:aws:iam::" + acct + ":root"}
	}
	return policy.Principal{Account: acct, ARN: "arn:aws:iam::" + acct + ":user/" + id.User}
}

// resourcePolicy is the resource's policy document, nil when it has none
// (or the resource does not exist: authorization comes before lookups, as
// on AWS, and a missing resource has no policy).
func (s *Server) resourcePolicy(rc *reqCtx, req AdmissionRequest) *policy.Document {
	ps, ok := s.b.(PolicyStore)
	if !ok || req.target == nil {
		return nil
	}
	text, err := ps.ResourcePolicy(rc.ctx, *req.target)
	if err != nil || text == "" {
		return nil
	}
	return s.policies.resource(text)
}

// streamTarget names a stream's policy.
func streamTarget(stream string) *storage.PolicyTarget {
	return &storage.PolicyTarget{Stream: stream, ConsumerSecs: -1}
}

// consumerAdmission is the admission of a request on a consumer named by
// ref. A consumer named by stream and name (no creation second) is looked up
// for its ARN, only when authorizing; one not found is authorized as
// ".../consumer/NAME", which consumer wildcards still match.
func (s *Server) consumerAdmission(rc *reqCtx, ref consumerRef) AdmissionRequest {
	secs := ref.secs
	if secs < 0 && rc.identity != nil {
		if c, err := s.b.DescribeConsumer(rc.ctx, ref.stream, ref.name); err == nil {
			secs = c.Created.Unix()
		}
	}
	arn := s.arnFor(rc, ref.stream) + "/consumer/" + ref.name
	if secs >= 0 {
		arn = wire.FormatConsumerARN(rc.region, s.account, ref.stream, ref.name, secs)
	}
	return AdmissionRequest{Stream: ref.stream, ResourceARN: arn,
		target: &storage.PolicyTarget{Stream: ref.stream, Consumer: ref.name, ConsumerSecs: secs}}
}

// policyCache holds parsed documents by their text, so a request does not
// parse its identity's and its resource's policies again. Identity policies
// come from the auth file and resource policies from PutResourcePolicy
// (validated there), so the set is small; it is dropped whole when it grows
// past maxCachedPolicies, which bounds its memory.
type policyCache struct {
	mu   sync.Mutex
	docs map[cacheKey]*policy.Document // nil value: the text does not parse
}

type cacheKey struct {
	kind policy.Kind
	text string
}

const maxCachedPolicies = 4096

func (c *policyCache) get(text string, kind policy.Kind) *policy.Document {
	k := cacheKey{kind, text}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.docs[k]; ok {
		return d
	}
	if c.docs == nil || len(c.docs) >= maxCachedPolicies {
		c.docs = make(map[cacheKey]*policy.Document)
	}
	d, err := policy.Parse([]byte(text), kind)
	if err != nil {
		d = nil // fails closed: a document that does not parse allows nothing
	}
	c.docs[k] = d
	return d
}

// identity parses the identity's policies; one that does not parse is left
// out (it allows nothing).
func (c *policyCache) identity(id *auth.Identity) []*policy.Document {
	out := make([]*policy.Document, 0, len(id.Policies))
	for _, raw := range id.Policies {
		if d := c.get(string(raw), policy.Identity); d != nil {
			out = append(out, d)
		}
	}
	return out
}

func (c *policyCache) resource(text string) *policy.Document {
	return c.get(text, policy.Resource)
}
