package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// settingsAuth: admin may do everything; app has no identity policy, so
// only a resource policy lets it in.
const settingsAuth = `credentials:
  - access_key_id: AKIDADMIN
    secret_access_key: admin-secret
    user: admin
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
  - access_key_id: AKIDAPP
    secret_access_key: app-secret
    user: app
`

const settingsARN = "arn:aws:kinesis:us-east-1:000000000000:stream/st"

// TestClusterSettingsProcesses: three `serve --cluster --auth-file`
// processes and the Go SDK signing with SigV4. Tags changed through one
// node are listed through the others; a resource policy put through node 1
// lets a user in, and keeps another out, on node 2, and its deletion
// through node 3 is enforced on node 1; UpdateMaxRecordSize through one
// node takes effect, once the stream is ACTIVE again, on every node, with
// single-node mode's texts; enhanced monitoring is described everywhere.
func TestClusterSettingsProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three servers")
	}
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte(settingsAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterProcs(t, "--auth-file", authFile)
	admin := func(id uint64) *kinesis.Client { return c.procs[id].clientAs("AKIDADMIN", "admin-secret") }
	app := func(id uint64) *kinesis.Client { return c.procs[id].clientAs("AKIDAPP", "app-secret") }
	ctx := context.Background()
	stream := aws.String("st")
	if _, err := admin(1).CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: stream, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(admin, stream)

	if _, err := admin(2).AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: stream, Tags: map[string]string{"team": "a", "env": "prod"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin(1).RemoveTagsFromStream(ctx, &kinesis.RemoveTagsFromStreamInput{StreamName: stream, TagKeys: []string{"env"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin(3).TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(settingsARN), Tags: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"team": "a", "k": "v"}
	for id := uint64(1); id <= 3; id++ {
		if got := c.streamTags(admin(id), stream); !reflect.DeepEqual(got, want) {
			t.Fatalf("node %d lists tags %v, want %v", id, got, want)
		}
	}
	many := map[string]string{}
	for i := range 49 {
		many[fmt.Sprint("t", i)] = "v"
	}
	_, err := admin(3).AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: stream, Tags: many})
	wantExactError(t, "a 51st tag", err, "InvalidArgumentException",
		"Failed to add tags to stream st under account 000000000000 because a given stream cannot have more than 50 tags associated with it.")

	c.checkPolicyAcrossNodes(admin, app, stream)
	c.checkRecordSizeAcrossNodes(admin, stream)

	if _, err := admin(3).EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: stream,
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingBytes}}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(admin, stream)
	for id := uint64(1); id <= 3; id++ {
		out, err := admin(id).DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: stream})
		if err != nil || len(out.StreamDescriptionSummary.EnhancedMonitoring) != 1 ||
			!reflect.DeepEqual(out.StreamDescriptionSummary.EnhancedMonitoring[0].ShardLevelMetrics, []types.MetricsName{types.MetricsNameIncomingBytes}) {
			t.Fatalf("node %d describes monitoring %+v, %v", id, out, err)
		}
	}
}

// checkPolicyAcrossNodes: a resource policy put through node 1 is enforced
// on node 2 (an Allow for app, a Deny for admin), and its deletion through
// node 3 on node 1. A node enforces a policy once it has applied it
// (README, Cluster), so enforcement is waited for.
func (c *clusterProcs) checkPolicyAcrossNodes(admin, app func(uint64) *kinesis.Client, stream *string) {
	t := c.t
	ctx := context.Background()
	put := func(cl *kinesis.Client) error {
		_, err := cl.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: stream, PartitionKey: aws.String("k"), Data: []byte("x")})
		return err
	}
	denied := func(user, why string) string {
		return "User: arn:aws:iam::000000000000:user/" + user + " is not authorized to perform: kinesis:PutRecord on resource: " + settingsARN + " " + why
	}
	wantExactError(t, "app before the policy", put(app(2)), "AccessDeniedException",
		denied("app", "because no identity-based policy allows the kinesis:PutRecord action"))
	doc := `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/app"}, "Action": "kinesis:PutRecord", "Resource": "` + settingsARN + `"},
		{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::000000000000:user/admin"}, "Action": "kinesis:PutRecord", "Resource": "` + settingsARN + `"}]}`
	if _, err := admin(1).PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(settingsARN), Policy: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 2 lets app put under the policy", func() error { return put(app(2)) })
	wantExactError(t, "admin under the policy's Deny, through node 2", put(admin(2)), "AccessDeniedException",
		denied("admin", "with an explicit deny in a resource-based policy"))
	got, err := admin(3).GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String(settingsARN)})
	if err != nil || aws.ToString(got.Policy) != doc {
		t.Fatalf("GetResourcePolicy through node 3: %v, %v", got, err)
	}
	if _, err := admin(3).DeleteResourcePolicy(ctx, &kinesis.DeleteResourcePolicyInput{ResourceARN: aws.String(settingsARN)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 lets admin put without the policy", func() error { return put(admin(1)) })
	wantExactError(t, "app without the policy, through node 1", put(app(1)), "AccessDeniedException",
		denied("app", "because no identity-based policy allows the kinesis:PutRecord action"))
}

// checkRecordSizeAcrossNodes: a record over 1 MiB is refused until
// UpdateMaxRecordSize through node 2 has taken effect; then every node
// takes it, and refuses one over the new size.
func (c *clusterProcs) checkRecordSizeAcrossNodes(admin func(uint64) *kinesis.Client, stream *string) {
	t := c.t
	ctx := context.Background()
	put := func(id uint64, size int) error {
		_, err := admin(id).PutRecord(ctx, &kinesis.PutRecordInput{StreamName: stream, PartitionKey: aws.String("k"), Data: bytes.Repeat([]byte("a"), size-1)})
		return err
	}
	big := 1536 << 10
	wantExactError(t, "1.5 MiB before the update", put(3, big), "InvalidArgumentException",
		fmt.Sprintf("Record size (data + partition key) of %d bytes exceeds the maximum record size of %d bytes.", big, 1<<20))
	if _, err := admin(2).UpdateMaxRecordSize(ctx, &kinesis.UpdateMaxRecordSizeInput{StreamARN: aws.String(settingsARN), MaxRecordSizeInKiB: aws.Int32(2048)}); err != nil {
		t.Fatal(err)
	}
	c.waitStreamActive(admin, stream) // --update-stream-delay (500ms), then ACTIVE
	for id := uint64(1); id <= 3; id++ {
		out, err := admin(id).DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: stream})
		if err != nil || aws.ToInt32(out.StreamDescriptionSummary.MaxRecordSizeInKiB) != 2048 {
			t.Fatalf("node %d describes %+v, %v", id, out, err)
		}
		if err := put(id, big); err != nil {
			t.Fatalf("1.5 MiB through node %d after the update: %v", id, err)
		}
	}
	wantExactError(t, "2.5 MiB after the update", put(1, 2560<<10), "InvalidArgumentException",
		fmt.Sprintf("Record size (data + partition key) of %d bytes exceeds the maximum record size of %d bytes.", 2560<<10, 2<<20))
}

// waitStreamActive waits until every node describes the stream ACTIVE.
func (c *clusterProcs) waitStreamActive(client func(uint64) *kinesis.Client, stream *string) {
	for id := uint64(1); id <= 3; id++ {
		waitFor(c.t, fmt.Sprintf("stream ACTIVE through node %d", id), func() error {
			out, err := client(id).DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: stream})
			if err == nil && out.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
				err = fmt.Errorf("status %s", out.StreamDescriptionSummary.StreamStatus)
			}
			return err
		})
	}
}

// streamTags lists a stream's tags with ListTagsForStream, and checks that
// ListTagsForResource agrees.
func (c *clusterProcs) streamTags(cl *kinesis.Client, stream *string) map[string]string {
	ctx := context.Background()
	out, err := cl.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: stream})
	if err != nil {
		c.t.Fatal(err)
	}
	got := map[string]string{}
	for _, tag := range out.Tags {
		got[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	res, err := cl.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: aws.String(settingsARN)})
	if err != nil {
		c.t.Fatal(err)
	}
	byARN := map[string]string{}
	for _, tag := range res.Tags {
		byARN[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	if !maps.Equal(got, byARN) {
		c.t.Fatalf("ListTagsForStream %v, ListTagsForResource %v", got, byARN)
	}
	return got
}

// clientAs is an SDK client of the process signing with this key.
func (p *process) clientAs(akid, secret string) *kinesis.Client {
	return kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), RetryMaxAttempts: 1,
		HTTPClient: newHTTPClient(p.tr), Credentials: credentials.NewStaticCredentialsProvider(akid, secret, "")})
}

// wantExactError fails unless err is the AWS error code with this message.
func wantExactError(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	var ae interface {
		ErrorCode() string
		ErrorMessage() string
	}
	if !errors.As(err, &ae) || ae.ErrorCode() != code || ae.ErrorMessage() != msg {
		t.Fatalf("%s: %v\nwant %s: %s", what, err, code, msg)
	}
}
