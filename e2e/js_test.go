package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shardlog/shardlog/storage"
)

// jsDir is the npm project of the JavaScript SDK tests; `npm ci` there (which
// .ci/run does) installs the pinned @aws-sdk/client-kinesis.
const jsDir = "js"

// TestJavaScriptSDK runs e2e/js/kinesis.test.mjs, the AWS SDK for JavaScript
// v3 driving a stream's life over HTTP/2, against an in-process server. The
// script's assertions (node:test) are the test; its report is logged.
//
// subscribe.test.mjs is enhanced fan-out: RegisterStreamConsumer and
// SubscribeToShard's event stream (records stored before, records arriving,
// resubscription after a ContinuationSequenceNumber, AWS's errors).
//
// operations.test.mjs calls the operations of the whole API (tags by ARN,
// record size, capacity modes, warm throughput, account settings, enhanced
// monitoring, encryption, record distribution, channels), each with one bad
// input answered with AWS's error type.
func TestJavaScriptSDK(t *testing.T) {
	node := requireNodeSDK(t)
	for _, script := range []string{"kinesis.test.mjs", "subscribe.test.mjs", "operations.test.mjs"} {
		t.Run(script, func(t *testing.T) {
			s := startServerWith(t, t.TempDir(), storage.Options{})
			runNode(t, node, script, "SHARDLOG_ENDPOINT="+s.endpoint)
		})
	}
}

// requireNodeSDK returns the node binary, or skips the test when node or the
// installed npm modules are missing.
func requireNodeSDK(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: the AWS SDK for JavaScript tests need Node.js 18+ (apt-get install -y nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@aws-sdk", "client-kinesis", "package.json")); err != nil {
		t.Skip("@aws-sdk/client-kinesis not installed: run `npm ci` in e2e/js (.ci/run does)")
	}
	return node
}

// runNode runs a node:test script in jsDir with extra environment variables
// and fails the test with the script's report if any of its tests failed.
func runNode(t *testing.T, node, script string, env ...string) {
	t.Helper()
	cmd := exec.Command(node, "--test-reporter=spec", script)
	cmd.Dir = jsDir
	// The SDK warns that its 2027 releases will need node 22; the pinned one does not.
	cmd.Env = append(append(os.Environ(), "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	t.Logf("node %s:\n%s", script, out)
}
