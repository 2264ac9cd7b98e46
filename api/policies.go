package api

import (
	"strconv"
	"strings"

	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/policy"
	"github.com/shardlog/shardlog/storage"
)

// The resource-policy operations: PutResourcePolicy, GetResourcePolicy and
// DeleteResourcePolicy, on a stream's or a consumer's ARN. Policies are
// stored with the stream or consumer (storage/policies.go) and evaluated by
// authorize (authz.go).

// maxPolicyBytes bounds a stored policy, so meta.db records stay small.
// AWS's own limit for Kinesis resource policies is not documented in the
// API reference; 20 KiB is IAM's resource-policy size elsewhere (unverified).
const maxPolicyBytes = 20 << 10

type resourcePolicyInput struct {
	ResourceARN *string
	Policy      *string
	StreamId    *string // reserved by AWS; accepted and ignored
}

func (in *resourcePolicyInput) resourceARN() *string { return in.ResourceARN }

// policyRequest is the policy operations' prologue (resourceRequest).
func (s *Server) policyRequest(rc *reqCtx, body []byte, withPolicy bool) (PolicyStore, *storage.PolicyTarget, *resourcePolicyInput, error) {
	ps, ok := s.b.(PolicyStore)
	if !ok {
		return nil, nil, nil, wire.ClientError(wire.TypeUnknownOperation, "")
	}
	in := new(resourcePolicyInput)
	target, err := s.resourceRequest(rc, body, in, func(v *wire.Validator) {
		checkResourceARN(v, in.ResourceARN)
		if withPolicy {
			v.NotNull("policy", in.Policy != nil)
		}
	})
	return ps, target, in, err
}

// resourceTargeted is a request on a ResourceARN: a resource policy
// operation, or a tag operation on a stream or consumer.
type resourceTargeted interface {
	resourceARN() *string
}

// resourceRequest is the prologue of the operations on a ResourceARN:
// decode, validate (validate checks every member, checkResourceARN among
// them, in AWS's order), resolve the ResourceARN, admit. It returns the
// resource the ARN names.
func (s *Server) resourceRequest(rc *reqCtx, body []byte, in resourceTargeted, validate func(*wire.Validator)) (*storage.PolicyTarget, error) {
	if err := decodeInput(rc, body, in); err != nil {
		return nil, err
	}
	var v wire.Validator
	validate(&v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	req, err := s.resolveResource(rc, *in.resourceARN())
	if err != nil {
		return nil, err
	}
	return req.target, s.admit(rc, req)
}

// checkResourceARN checks the required ResourceARN member.
func checkResourceARN(v *wire.Validator, arn *string) {
	v.ReqStr("resourceARN", arn, wire.PatternResourceARN, 1, 2048)
}

// resolveResource turns a ResourceARN into the admission of a request on
// it. An ARN of another account names nothing here.
func (s *Server) resolveResource(rc *reqCtx, arn string) (AdmissionRequest, error) {
	if p, ok := wire.ParseConsumerARN(arn); ok {
		if p.Account != s.account || len(p.Stream) > 128 || len(p.Consumer) > 128 || p.CreatedSecs < 0 {
			return AdmissionRequest{}, reasonError(wire.TypeResourceNotFound, storage.ReasonConsumerNotFound,
				storage.Facts{Account: p.Account, Stream: p.Stream, Consumer: p.Consumer})
		}
		return s.consumerAdmission(rc, consumerRef{stream: p.Stream, name: p.Consumer, secs: p.CreatedSecs}), nil
	}
	if _, ok := wire.ParseStreamARN(arn); !ok {
		// The model's pattern allows text before "stream/" that no stream
		// or consumer ARN has.
		return AdmissionRequest{}, wire.InvalidArgument(msgInvalidResourceARN(arn))
	}
	stream, err := s.resolveStream(wire.StreamSelector{StreamARN: &arn})
	if err != nil {
		return AdmissionRequest{}, err
	}
	return AdmissionRequest{Stream: stream, ResourceARN: s.arnFor(rc, stream), target: streamTarget(stream)}, nil
}

func (s *Server) putResourcePolicy(rc *reqCtx, body []byte) (any, error) {
	ps, target, in, err := s.policyRequest(rc, body, true)
	if err != nil {
		return nil, err
	}
	if err := checkResourcePolicy(*in.Policy); err != nil {
		return nil, err
	}
	return nil, ps.SetResourcePolicy(rc.ctx, *target, *in.Policy)
}

func (s *Server) getResourcePolicy(rc *reqCtx, body []byte) (any, error) {
	ps, target, _, err := s.policyRequest(rc, body, false)
	if err != nil {
		return nil, err
	}
	text, err := ps.ResourcePolicy(rc.ctx, *target)
	if err != nil {
		return nil, err
	}
	if text == "" {
		text = "{}" // AWS's answer for a resource without a policy
	}
	return struct{ Policy string }{text}, nil
}

func (s *Server) deleteResourcePolicy(rc *reqCtx, body []byte) (any, error) {
	ps, target, _, err := s.policyRequest(rc, body, false)
	if err != nil {
		return nil, err
	}
	return nil, ps.SetResourcePolicy(rc.ctx, *target, "")
}

// checkResourcePolicy validates a policy document as a resource policy.
func checkResourcePolicy(text string) error {
	if len(text) > maxPolicyBytes {
		return wire.InvalidArgument(msgInvalidPolicy("the policy is longer than " + strconv.Itoa(maxPolicyBytes) + " bytes"))
	}
	if _, err := policy.Parse([]byte(text), policy.Resource); err != nil {
		detail := strings.Replace(err.Error(), policy.ErrInvalid.Error()+": ", "", 1)
		return wire.InvalidArgument(msgInvalidPolicy(detail))
	}
	return nil
}
