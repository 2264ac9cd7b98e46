package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/chromedp/chromedp"
)

// The console's browser tests drive Debian's chromium, headless, against a
// real server (runServe over the storage engine). They wait for conditions,
// never for times: each wait is bounded only by browserDeadline, generous
// for a loaded machine. Screenshots of every step go to
// $SHARDLOG_ARTIFACTS/console (or a temporary directory), printed with -v;
// with SHARDLOG_UPDATE_DOCS=1 the stream page's shot also replaces
// docs/console.png, the README's picture.

const browserDeadline = 2 * time.Minute

// browser is one headless chromium tab, with what its console reported.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	step int

	mu       sync.Mutex
	problems []string
}

// networkStatus matches the browser's own log line for an HTTP error answer.
var networkStatus = regexp.MustCompile(`status of (\d{3})`)

// chromium is the browser's path; without one the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the console's browser test")
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the console's browser test")
	return ""
}

// newBrowser opens a tab of the browser at exe. Start the server first: the
// tab then closes before the server stops (cleanups run last first), and
// the page never sees it gone.
func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, dir: artifactDir(t)}
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	messages := chromedp.Console(ctx)
	t.Cleanup(b.check) // before the tab closes: cleanups run last first
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.note(m)
		}
	}()
	return b
}

// note keeps what fails the test: uncaught exceptions and console errors.
// The browser's own "Failed to load resource: ... status of 4xx" lines are
// the API's client-error answers, which the page shows to the user as AWS
// does (a wrong secret, an access denied); a 5xx still fails the test.
func (b *browser) note(m chromedp.ConsoleMessage) {
	if m.Type != chromedp.ConsoleError && !m.IsException() {
		return
	}
	if st := networkStatus.FindStringSubmatch(m.Text); m.Source == "network" && st != nil && st[1][0] == '4' {
		b.t.Logf("browser: %s (an API answer)", m)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, m.String())
}

// check fails the test on any problem the page reported so far.
func (b *browser) check() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("browser console: %s", p)
	}
	b.problems = nil
}

func artifactDir(t *testing.T) string {
	dir := t.TempDir()
	if base := os.Getenv("SHARDLOG_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, "console", t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("console screenshots in %s", dir)
	return dir
}

// do runs the steps, bounded by browserDeadline; on failure it saves a
// screenshot of the page as it was.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserDeadline)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.check()
		b.t.Fatalf("%s: %v", what, err)
	}
	b.check()
}

// shot saves a full-page screenshot and returns its path.
func (b *browser) shot(name string) string {
	b.t.Helper()
	b.step++
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.step, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// wait polls a JavaScript condition until it is truthy.
func wait(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0))
}

// js runs a JavaScript statement for its effect.
func js(stmt string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](stmt)
}

// choose sets a <select> and tells the page, as a user's pick would.
func choose(sel, value string) chromedp.Action[chromedp.Void] {
	return js(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('change', {bubbles: true})); })()`, sel, value))
}

func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(sel, chromedp.NodeVisible)
}

func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(sel)
}

// TestConsoleInBrowser walks the console as a user would: the empty list,
// creating a stream through two confirmations, a split's lineage and the
// stream's tags, records put with the SDK seen moving the throughput chart
// and in the record browser (from each kind of start, as JSON and hex, and
// followed live), and deleting the stream with its consumer.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	o := fastOptions()
	o.console, o.throttle = true, true
	ep := serveFor(t, o, nil)
	b := newBrowser(t, exe)
	endpoint := "http://" + ep.plain.String()
	c, _ := sdkClient(endpoint, h1Transport(nil))
	ctx := context.Background()
	const name = "console-demo"

	b.do("load the console", chromedp.Navigate(endpoint+"/console/"), visible("#streams-empty"))
	b.shot("streams-empty")

	b.do("fill in the create form", click("#create-stream"), visible("#create-name"),
		chromedp.SendKeys("#create-name", name), chromedp.SetValue("#create-shards", "2"),
		click("#dialog-confirm"), visible("#confirm-name"),
		wait(fmt.Sprintf(`document.querySelector('#confirm-name').textContent === %q`, name)))
	b.shot("create-confirm")
	b.do("confirm the creation", click("#dialog-confirm"),
		wait(fmt.Sprintf(`document.querySelector('tr[data-stream=%q] td:nth-child(2)')?.textContent === 'ACTIVE'`, name)))
	b.shot("stream-created")
	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil || aws.ToInt32(sum.StreamDescriptionSummary.OpenShardCount) != 2 {
		t.Fatalf("the stream the console created: %v, %v", sum, err)
	}

	// A split gives the key space a second generation: the closed parent
	// above, its two children below it.
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(name), ShardToSplit: aws.String("shardId-000000000001"),
		NewStartingHashKey: aws.String("255211775190703847597530955573826158592")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String(name), Tags: map[string]string{"team": "payments", "env": "dev"}}); err != nil {
		t.Fatal(err)
	}

	if _, err := c.EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: aws.String(name),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingRecords, types.MetricsNameIncomingBytes}}); err != nil {
		t.Fatal(err)
	}

	// The chart draws rates between two counter documents: once it has
	// points, records put now show as a rate above zero.
	b.do("open the stream page", click(fmt.Sprintf(`tr[data-stream=%q] a`, name)), visible("#keyspace"),
		wait(`document.querySelectorAll('#keyspace g[data-shard]').length === 4`),
		wait(`Number(document.querySelector('#keyspace g[data-shard="shardId-000000000003"] rect').getAttribute('y')) > Number(document.querySelector('#keyspace g[data-shard="shardId-000000000001"] rect').getAttribute('y'))`),
		wait(`document.querySelectorAll('#tags-table tbody tr').length === 2`),
		wait(`Number(document.querySelector('#chart-records').dataset.samples) >= 2`))
	putJSON(t, c, name, 0, 40)
	b.do("see the throughput chart move", wait(`Number(document.querySelector('#chart-records').dataset.max) > 0`),
		wait(`Number(document.querySelector('#chart-bytes').dataset.max) > 0`),
		// Shard-level series (enhanced monitoring) give the shard its own rate.
		wait(`document.querySelector('tr[data-shard="shardId-000000000000"] .shard-rate .meter') !== null`))
	shot := b.shot("stream-page")
	if os.Getenv("SHARDLOG_UPDATE_DOCS") == "1" && shot != "" {
		copyFile(t, shot, filepath.Join("..", "..", "docs", "console.png"))
	}

	b.do("read the shard from its trim horizon", click("#browse-records"), visible("#rb-read"),
		wait(`document.querySelector('#rb-shard').options.length === 4`),
		choose("#rb-shard", "shardId-000000000000"), choose("#rb-position", "TRIM_HORIZON"), click("#rb-read"),
		wait(`document.querySelectorAll('#rb-body tr').length === 40`),
		wait(`document.querySelector('#rb-body tr .pk').textContent === 'pk-0'`),
		choose("#rb-mode", "json"),
		wait(`document.querySelector('#rb-body tr pre').textContent.includes('"n": 0,\n')`))
	b.shot("records-json")
	b.do("show data as hex", choose("#rb-mode", "hex"),
		wait(`document.querySelector('#rb-body tr pre').textContent.startsWith('000000  7b 22 6e 22')`))
	b.shot("records-hex")

	b.do("start at a sequence number", js(`document.querySelector('#rb-seq').dataset.want = document.querySelectorAll('#rb-body tr')[5].dataset.seq`),
		choose("#rb-position", "AT_SEQUENCE_NUMBER"), visible("#rb-seq"),
		js(`document.querySelector('#rb-seq').value = document.querySelector('#rb-seq').dataset.want`), click("#rb-read"),
		wait(`document.querySelector('#rb-body tr .pk')?.textContent === 'pk-5' && document.querySelectorAll('#rb-body tr').length === 35`))
	b.do("start at a timestamp", choose("#rb-position", "AT_TIMESTAMP"), visible("#rb-timestamp"),
		chromedp.SetValue("#rb-timestamp", "2001-02-03T04:05:06"), click("#rb-read"),
		wait(`document.querySelector('#rb-body tr .pk')?.textContent === 'pk-0' && document.querySelectorAll('#rb-body tr').length === 40`))
	b.do("start at the tip", choose("#rb-position", "LATEST"), click("#rb-read"),
		wait(`document.querySelector('#rb-info').textContent === '0 record(s) read · 0 ms behind the tip'`))

	b.do("follow the tip", choose("#rb-mode", "utf8"), click("#rb-follow"))
	if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(name), PartitionKey: aws.String("tip-record"),
		ExplicitHashKey: aws.String("0"), Data: []byte("hello from the tip")}); err != nil {
		t.Fatal(err)
	}
	b.do("see the new record live", wait(`[...document.querySelectorAll('#rb-body tr .pk')].some(e => e.textContent === 'tip-record')`),
		wait(`document.querySelector('#rb-body tr:last-child pre').textContent === 'hello from the tip'`))
	b.shot("records-followed")

	// A consumer makes DeleteStream refuse unless told to deregister it.
	if _, err := c.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: sum.StreamDescriptionSummary.StreamARN,
		ConsumerName: aws.String("console-reader")}); err != nil {
		t.Fatal(err)
	}
	b.do("open the delete dialog", click("#rb-follow"), click("h1 a"), visible("#delete-stream"),
		wait(`[...document.querySelectorAll('#consumers-table td')].some(e => e.textContent === 'console-reader')`),
		click("#delete-stream"), visible("#delete-confirm-name"), wait(`document.querySelector('#dialog-confirm').disabled`),
		chromedp.SendKeys("#delete-confirm-name", name), click("#delete-enforce"), wait(`!document.querySelector('#dialog-confirm').disabled`))
	b.shot("delete-confirm")
	b.do("delete the stream", click("#dialog-confirm"), visible("#streams-empty"))
	b.shot("stream-deleted")
	_, err = c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if errorCode(err) != "ResourceNotFoundException" {
		t.Fatalf("after the console deleted it, DescribeStreamSummary: %v", err)
	}
}

// putJSON puts n JSON records {"n": i, ...} with partition keys pk-i into
// the stream's first shard (hash key 0), starting at from.
func putJSON(t *testing.T, c *kinesis.Client, stream string, from, n int) {
	t.Helper()
	var entries []types.PutRecordsRequestEntry
	for i := from; i < from+n; i++ {
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("pk-%d", i)), ExplicitHashKey: aws.String("0"),
			Data: fmt.Appendf(nil, `{"n":%d,"item":"book","price":12.5}`, i)})
	}
	out, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
		t.Fatalf("PutRecords: %v, %v", out, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", to)
}

const consoleAuthYAML = `credentials:
  - access_key_id: AKIDADMIN
    secret_access_key: admin-secret
    user: admin
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:*", "shardlog:GetMetrics"], "Resource": "*"}]}
  - access_key_id: AKIDREADER
    secret_access_key: reader-secret
    user: reader
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:ListStreams", "kinesis:DescribeStreamSummary"], "Resource": "*"}]}
  - access_key_id: AKIDTEMP
    secret_access_key: temp-secret
    session_token: the-token
    user: temp
    policies:
      - {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}
`

// TestConsoleSignedInBrowser runs the console against a server with
// --auth-file: a wrong secret is refused at sign-in, the right one lists the
// streams (every call signed in the browser and verified by api/auth) and,
// under --metrics-auth, its live counters; a key whose policies allow less
// sees AccessDenied where they stop it (counters included), and
// the page's signer, with WebCrypto and with its plain-JavaScript fallback,
// produces signatures that api/auth's verifier accepts.
func TestConsoleSignedInBrowser(t *testing.T) {
	exe := chromium(t)
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte(consoleAuthYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	o := fastOptions()
	o.console, o.authFile, o.metricsAuth = true, authFile, true
	ep := serveFor(t, o, nil)
	b := newBrowser(t, exe)
	endpoint := "http://" + ep.plain.String()
	admin := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDADMIN", SecretAccessKey: "admin-secret"}, nil
		})})
	if _, err := admin.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String("signed-demo"), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	row := `document.querySelector('tr[data-stream="signed-demo"] td:nth-child(2)')?.textContent === 'ACTIVE'`

	b.do("sign in with a wrong secret", chromedp.Navigate(endpoint+"/console/"), visible("#login-akid"),
		chromedp.SendKeys("#login-akid", "AKIDADMIN"), chromedp.SendKeys("#login-secret", "not-the-secret"), click("#login-submit"),
		wait(`document.querySelector('#login-error').textContent.startsWith('InvalidSignatureException')`))
	b.shot("signin-refused")
	b.do("sign in", chromedp.SetValue("#login-secret", "admin-secret"), click("#login-submit"), wait(row),
		wait(`document.querySelector('#who').textContent.includes('AKIDADMIN')`))
	b.do("see live counters, signed (--metrics-auth)", click(`tr[data-stream="signed-demo"] a`), visible("#keyspace"),
		wait(`Number(document.querySelector('#chart-records').dataset.samples) >= 2`))
	b.shot("signed-in")

	checkSigner(t, b, authFile)

	b.do("sign in with fewer permissions", click(`header nav a`), visible("#streams-table"), click("#signout"), visible("#login-akid"),
		chromedp.SendKeys("#login-akid", "AKIDREADER"), chromedp.SendKeys("#login-secret", "reader-secret"), click("#login-submit"), wait(row),
		click(`tr[data-stream="signed-demo"] a`), visible("#stream-facts dd"),
		wait(`document.querySelector('#shards .error')?.textContent.startsWith('AccessDeniedException')`))
	b.do("see the counters refused", wait(`document.querySelector('#banner').textContent.startsWith('Live counters: AccessDeniedException')`))
	b.shot("reader-denied")
}
