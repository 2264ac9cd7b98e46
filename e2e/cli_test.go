package e2e

import (
	"os"
	"os/exec"
	"testing"
)

// awsCLI is the Debian awscli package's AWS CLI v2; the first `aws` on PATH
// may be a v1 shim.
const awsCLI = "/usr/bin/aws"

// TestAWSCLI runs scripts/cli-e2e.sh, which drives the AWS CLI v2 through a
// stream's life, against an in-process server (so it needs no build).
func TestAWSCLI(t *testing.T) {
	if _, err := os.Stat(awsCLI); err != nil {
		t.Skipf("%s not installed (apt-get install -y awscli): %v", awsCLI, err)
	}
	if testing.Short() {
		t.Skip("the AWS CLI starts a Python interpreter per call; skipped with -short")
	}
	s := startServer(t, t.TempDir())
	cmd := exec.Command("bash", "../scripts/cli-e2e.sh")
	cmd.Env = append(os.Environ(), "SHARDLOG_ENDPOINT="+s.endpoint)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cli-e2e.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
