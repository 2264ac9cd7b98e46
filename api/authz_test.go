package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"

	"github.com/shardlog/shardlog/api/auth"
	"github.com/shardlog/shardlog/api/wire"
	"github.com/shardlog/shardlog/storage"
	"github.com/shardlog/shardlog/vfs"
)

// The identities of the authorization tests, by access key (and user name);
// authFileOf makes them an auth file, so requests are really verified.
var testIdentities = map[string][]string{
	"admin":  {`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}`},
	"none":   nil,
	"reader": {`{"Statement":[{"Effect":"Allow","Action":["kinesis:Get*","kinesis:Describe*","kinesis:List*"],"Resource":"arn:aws:kinesis:*:*:stream/orders"},{"Effect":"Allow","Action":"kinesis:ListStreams","Resource":"*"}]}`},
	"nowrite": {
		`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}}`,
		`{"Statement":{"Effect":"Deny","Action":"kinesis:PutRecord*","Resource":"arn:aws:kinesis:us-east-1:000000000000:stream/orders"}}`,
	},
	"bob":   nil, // allowed by the resource policies only
	"carol": {`{"Statement":{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}}`},
	// scraper may GET /metrics under MetricsAuth, and nothing else.
	"scraper": {`{"Statement":{"Effect":"Allow","Action":"shardlog:GetMetrics","Resource":"*"}}`},
}

const (
	acctID       = "000000000000"
	ordersARN    = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
	logsARN      = "arn:aws:kinesis:us-east-1:000000000000:stream/logs"
	ordersPolicy = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":["kinesis:PutRecord","kinesis:PutRecords","kinesis:DescribeStreamSummary"],"Resource":"` + ordersARN + `"},
		{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/carol"},"Action":"kinesis:DescribeStreamSummary"}]}`
)

// authFileOf writes testIdentities as an auth file (secret "secret" for
// every key), so the table runs through real SigV4 verification.
func authFileOf(t *testing.T) *auth.Verifier {
	t.Helper()
	type cred struct {
		Key      string            `json:"access_key_id"`
		Secret   string            `json:"secret_access_key"`
		User     string            `json:"user"`
		Policies []json.RawMessage `json:"policies,omitempty"`
	}
	var creds []cred
	for key, pols := range testIdentities {
		c := cred{Key: key, Secret: "secret", User: key}
		for _, p := range pols {
			c.Policies = append(c.Policies, json.RawMessage(p))
		}
		creds = append(creds, c)
	}
	b, err := json.Marshal(map[string]any{"credentials": creds})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.Load(path, acctID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// authzRig is the api over a real store with streams orders and logs, an
// ACTIVE consumer app on orders, and ordersPolicy on orders; consumerARN
// has a policy letting bob describe it.
type authzRig struct {
	url, consumerARN string
}

func newAuthzRig(t *testing.T) authzRig {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Dir: t.TempDir(), FS: vfs.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, name := range []string{"orders", "logs"} {
		if err := st.CreateStream(ctx, storage.CreateStreamInput{Name: name, ShardCount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := st.RegisterConsumer(ctx, "orders", "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Auth: authFileOf(t)}, StoreBackend(st))
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	rig := authzRig{url: hs.URL, consumerARN: wire.FormatConsumerARN("us-east-1", acctID, "orders", "app", c.Created.Unix())}
	admin := rig.client("admin")
	if _, err := admin.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(ordersARN), Policy: aws.String(ordersPolicy)}); err != nil {
		t.Fatal(err)
	}
	cp := `{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::000000000000:user/bob"]},"Action":"kinesis:DescribeStreamConsumer"}}`
	if _, err := admin.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(rig.consumerARN), Policy: aws.String(cp)}); err != nil {
		t.Fatal(err)
	}
	return rig
}

func (r authzRig) client(key string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(r.url),
		Credentials:      credentials.NewStaticCredentialsProvider(key, "secret", ""),
		RetryMaxAttempts: 1,
	})
}

func denied(user, action, resource, why string) string {
	return "User: arn:aws:iam::000000000000:user/" + user + " is not authorized to perform: kinesis:" + action +
		" on resource: " + resource + " " + why
}

func noAllow(action string) string {
	return "because no identity-based policy allows the kinesis:" + action + " action"
}

const (
	identityDeny = "with an explicit deny in an identity-based policy"
	resourceDeny = "with an explicit deny in a resource-based policy"
)

// TestAuthorizationSDK runs a table of policy cases through the server with
// the Go SDK, one client per access key.
func TestAuthorizationSDK(t *testing.T) {
	rig := newAuthzRig(t)
	ctx := context.Background()
	put := func(arn string) func(*kinesis.Client) error {
		return func(c *kinesis.Client) error {
			_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(arn), PartitionKey: aws.String("k"), Data: []byte("x")})
			return err
		}
	}
	summary := func(name string) func(*kinesis.Client) error {
		return func(c *kinesis.Client) error {
			_, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
			return err
		}
	}
	listStreams := func(c *kinesis.Client) error { _, err := c.ListStreams(ctx, &kinesis.ListStreamsInput{}); return err }
	describeConsumer := func(c *kinesis.Client) error {
		_, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(rig.consumerARN)})
		return err
	}
	getPolicy := func(c *kinesis.Client) error {
		_, err := c.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String(ordersARN)})
		return err
	}
	deleteStream := func(name string) func(*kinesis.Client) error {
		return func(c *kinesis.Client) error {
			_, err := c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name)})
			return err
		}
	}
	cases := []struct {
		name, key string
		call      func(*kinesis.Client) error
		want      string // "" for success, else the AccessDenied message
	}{
		{"admin writes", "admin", put(ordersARN), ""},
		{"no policies", "none", put(ordersARN), denied("none", "PutRecord", ordersARN, noAllow("PutRecord"))},
		{"no policies, account action", "none", listStreams, denied("none", "ListStreams", "*", noAllow("ListStreams"))},
		{"no policies, missing stream", "none", summary("nosuch"), denied("none", "DescribeStreamSummary", "arn:aws:kinesis:us-east-1:000000000000:stream/nosuch", noAllow("DescribeStreamSummary"))},
		{"reader reads its stream", "reader", summary("orders"), ""},
		{"reader lists streams", "reader", listStreams, ""},
		{"reader, other stream", "reader", summary("logs"), denied("reader", "DescribeStreamSummary", logsARN, noAllow("DescribeStreamSummary"))},
		{"reader may not write", "reader", put(ordersARN), denied("reader", "PutRecord", ordersARN, noAllow("PutRecord"))},
		{"reader, consumer resource", "reader", describeConsumer, denied("reader", "DescribeStreamConsumer", "", noAllow("DescribeStreamConsumer"))},
		{"identity deny wins", "nowrite", put(ordersARN), denied("nowrite", "PutRecord", ordersARN, identityDeny)},
		{"identity deny elsewhere", "nowrite", put(logsARN), ""},
		{"resource policy allows", "bob", put(ordersARN), ""},
		{"resource policy, other stream", "bob", put(logsARN), denied("bob", "PutRecord", logsARN, noAllow("PutRecord"))},
		{"resource policy, other action", "bob", deleteStream("orders"), denied("bob", "DeleteStream", ordersARN, noAllow("DeleteStream"))},
		{"consumer policy allows", "bob", describeConsumer, ""},
		{"resource deny wins", "carol", summary("orders"), denied("carol", "DescribeStreamSummary", ordersARN, resourceDeny)},
		{"resource deny elsewhere", "carol", summary("logs"), ""},
		{"policy operations are authorized", "none", getPolicy, denied("none", "GetResourcePolicy", ordersARN, noAllow("GetResourcePolicy"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(rig.client(tc.key))
			want := strings.Replace(tc.want, " on resource:  ", " on resource: "+rig.consumerARN+" ", 1)
			checkDenied(t, err, want)
		})
	}
}

func checkDenied(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got %v, want success", err)
		}
		return
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != wire.TypeAccessDenied || ae.ErrorMessage() != want {
		t.Fatalf("got %v\nwant AccessDeniedException %q", err, want)
	}
}

// TestResourcePolicyOperations: Get without a policy is "{}", Put stores the
// text as given, Delete removes it, bad documents and ARNs are refused.
func TestResourcePolicyOperations(t *testing.T) {
	rig := newAuthzRig(t)
	ctx := context.Background()
	c := rig.client("admin")
	get := func(arn string) string {
		t.Helper()
		out, err := c.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String(arn)})
		if err != nil {
			t.Fatalf("GetResourcePolicy(%s): %v", arn, err)
		}
		return aws.ToString(out.Policy)
	}
	if p := get(logsARN); p != "{}" {
		t.Fatalf("no policy: got %q, want {}", p)
	}
	if p := get(ordersARN); p != ordersPolicy {
		t.Fatalf("got %q, want the text as put", p)
	}
	if _, err := c.DeleteResourcePolicy(ctx, &kinesis.DeleteResourcePolicyInput{ResourceARN: aws.String(ordersARN)}); err != nil {
		t.Fatal(err)
	}
	if p := get(ordersARN); p != "{}" {
		t.Fatalf("after delete: %q", p)
	}
	bad := []struct{ arn, policy, typ string }{
		{ordersARN, `not json`, wire.TypeInvalidArgument},
		{ordersARN, `{"Statement":{"Effect":"Allow","Action":"kinesis:*"}}`, wire.TypeInvalidArgument}, // no Principal
		{ordersARN, `{"Statement":{"Effect":"Permit","Principal":"*","Action":"kinesis:*"}}`, wire.TypeInvalidArgument},
		{"arn:aws:kinesis:us-east-1:000000000000:stream/nosuch", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}}`, wire.TypeResourceNotFound},
		{"arn:aws:kinesis:us-east-1:111122223333:stream/orders", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}}`, wire.TypeResourceNotFound},
		{rig.consumerARN + "0", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}}`, wire.TypeResourceNotFound},
		{"arn:aws:s3:::bucket", `{}`, wire.TypeValidation},
	}
	for _, b := range bad {
		_, err := c.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(b.arn), Policy: aws.String(b.policy)})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != b.typ {
			t.Errorf("Put(%s, %s) = %v, want %s", b.arn, b.policy, err, b.typ)
		}
	}
}

// TestEveryOperationAuthorizes sends each operation, well formed, as a key
// with no policies: every one must be refused with its action and resource,
// so no operation skips admit.
func TestEveryOperationAuthorizes(t *testing.T) {
	rig := newAuthzRig(t)
	ctx := context.Background()
	it, err := rig.client("admin").GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("orders"),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: "TRIM_HORIZON"})
	if err != nil {
		t.Fatal(err)
	}
	sel := `"StreamName":"orders"`
	const channelARN = "arn:aws:kinesis:us-east-1:000000000000:channel/ch"
	bodies := map[string]string{
		"CreateStream":                  `{"StreamName":"orders","ShardCount":1}`,
		"DeleteStream":                  `{` + sel + `}`,
		"ListStreams":                   `{}`,
		"DescribeStream":                `{` + sel + `}`,
		"DescribeStreamSummary":         `{` + sel + `}`,
		"DescribeLimits":                `{}`,
		"IncreaseStreamRetentionPeriod": `{` + sel + `,"RetentionPeriodHours":48}`,
		"DecreaseStreamRetentionPeriod": `{` + sel + `,"RetentionPeriodHours":24}`,
		"ListShards":                    `{` + sel + `}`,
		"PutRecord":                     `{` + sel + `,"PartitionKey":"k","Data":"eA=="}`,
		"PutRecords":                    `{` + sel + `,"Records":[{"PartitionKey":"k","Data":"eA=="}]}`,
		"PutResourcePolicy":             `{"ResourceARN":"` + ordersARN + `","Policy":"{}"}`,
		"GetResourcePolicy":             `{"ResourceARN":"` + ordersARN + `"}`,
		"DeleteResourcePolicy":          `{"ResourceARN":"` + rig.consumerARN + `"}`,
		"GetShardIterator":              `{` + sel + `,"ShardId":"shardId-000000000000","ShardIteratorType":"LATEST"}`,
		"GetRecords":                    `{"ShardIterator":"` + aws.ToString(it.ShardIterator) + `"}`,
		"AddTagsToStream":               `{` + sel + `,"Tags":{"a":"b"}}`,
		"RemoveTagsFromStream":          `{` + sel + `,"TagKeys":["a"]}`,
		"ListTagsForStream":             `{` + sel + `}`,
		"SplitShard":                    `{` + sel + `,"ShardToSplit":"shardId-000000000000","NewStartingHashKey":"100"}`,
		"MergeShards":                   `{` + sel + `,"ShardToMerge":"shardId-000000000000","AdjacentShardToMerge":"shardId-000000000001"}`,
		"UpdateShardCount":              `{` + sel + `,"TargetShardCount":2,"ScalingType":"UNIFORM_SCALING"}`,
		"UpdateMaxRecordSize":           `{"StreamARN":"` + ordersARN + `","MaxRecordSizeInKiB":2048}`,
		"RegisterStreamConsumer":        `{"StreamARN":"` + ordersARN + `","ConsumerName":"x"}`,
		"DescribeStreamConsumer":        `{"StreamARN":"` + ordersARN + `","ConsumerName":"app"}`,
		"ListStreamConsumers":           `{"StreamARN":"` + ordersARN + `"}`,
		"DeregisterStreamConsumer":      `{"ConsumerARN":"` + rig.consumerARN + `"}`,
		"SubscribeToShard":              `{"ConsumerARN":"` + rig.consumerARN + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"LATEST"}}`,
		"CreateChannel": `{"ChannelName":"ch","ServiceExecutionRoleARN":"arn:aws:iam::000000000000:role/r",` +
			`"StreamConfigurationList":[{"StreamARN":"` + ordersARN + `","RecordConfiguration":{"RecordFormatType":"JSON"}}],` +
			`"S3DestinationConfiguration":{"StorageConfiguration":{"BucketARN":"arn:aws:s3:::bkt","CompressionType":"NONE","ExpectedBucketOwner":"000000000000"}}}`,
		"DescribeChannel": `{"ChannelARN":"` + channelARN + `"}`,
		"UpdateChannel":   `{"ChannelARN":"` + channelARN + `","S3DestinationConfiguration":{"DataFreshnessInSeconds":600}}`,
		"DeleteChannel":   `{"ChannelARN":"` + channelARN + `"}`,
		"ListChannels":    `{}`,

		"TagResource":         `{"ResourceARN":"` + rig.consumerARN + `","Tags":{"a":"b"}}`,
		"UntagResource":       `{"ResourceARN":"` + ordersARN + `","TagKeys":["a"]}`,
		"ListTagsForResource": `{"ResourceARN":"` + rig.consumerARN + `"}`,

		"UpdateStreamRecordDistributionStrategy": `{"StreamARN":"` + ordersARN + `","RecordDistributionStrategy":"AUTO"}`,
		"EnableEnhancedMonitoring":               `{` + sel + `,"ShardLevelMetrics":["ALL"]}`,
		"DisableEnhancedMonitoring":              `{` + sel + `,"ShardLevelMetrics":["ALL"]}`,
		"UpdateStreamMode":                       `{"StreamARN":"` + ordersARN + `","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}`,
		"UpdateStreamWarmThroughput":             `{` + sel + `,"WarmThroughputMiBps":8}`,
		"DescribeAccountSettings":                `{}`,
		"UpdateAccountSettings":                  `{"MinimumThroughputBillingCommitment":{"Status":"ENABLED"}}`,
		"StartStreamEncryption":                  `{` + sel + `,"EncryptionType":"KMS","KeyId":"alias/aws/kinesis"}`,
		"StopStreamEncryption":                   `{` + sel + `,"EncryptionType":"KMS","KeyId":"alias/aws/kinesis"}`,
	}
	resources := map[string]string{"ListStreams": "*", "DescribeLimits": "*", "ListChannels": "*", "CreateChannel": channelARN,
		"DescribeChannel": channelARN, "UpdateChannel": channelARN, "DeleteChannel": channelARN, "DescribeStreamConsumer": rig.consumerARN,
		"DeregisterStreamConsumer": rig.consumerARN, "SubscribeToShard": rig.consumerARN, "DeleteResourcePolicy": rig.consumerARN,
		"TagResource": rig.consumerARN, "ListTagsForResource": rig.consumerARN, "DescribeAccountSettings": "*", "UpdateAccountSettings": "*"}
	for op := range operations {
		body, ok := bodies[op]
		if !ok {
			t.Errorf("%s: no request in this test", op)
			continue
		}
		t.Run(op, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, rig.url, strings.NewReader(body))
			req.Header.Set("Content-Type", wire.ContentTypeJSON11)
			req.Header.Set("X-Amz-Target", targetPrefix+op)
			sum := sha256.Sum256([]byte(body))
			creds := aws.Credentials{AccessKeyID: "none", SecretAccessKey: "secret"}
			if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesis", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&out)
			res := resources[op]
			if res == "" {
				res = ordersARN
			}
			want := denied("none", op, res, noAllow(op))
			if resp.StatusCode != http.StatusBadRequest || out["__type"] != wire.TypeAccessDenied || out["message"] != want {
				t.Fatalf("got %d %v\nwant 400 AccessDeniedException %q", resp.StatusCode, out, want)
			}
		})
	}
}
