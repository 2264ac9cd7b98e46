package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// putRecordBody is a PutRecord request body for stream name.
func putRecordBody(name string) string {
	return `{"StreamName":"` + name + `","PartitionKey":"k","Data":"c2xvdw=="}`
}

// requestHead is the head of a signed-looking PutRecord request with a
// body of n bytes.
func requestHead(n int) string {
	return "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\n" +
		"X-Amz-Target: Kinesis_20131202.PutRecord\r\nX-Amz-Date: 20240101T000000Z\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=a/20240101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=x\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", n)
}

// trickle writes p to w a byte at a time, pausing between bytes, until it
// runs out (then keeps the connection silent) or a write fails: a client
// that sends just enough to look alive. It returns when stop closes.
func trickle(w io.Writer, p string, stop <-chan struct{}) {
	for i := 0; i < len(p); i++ {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := w.Write([]byte{p[i]}); err != nil {
			return
		}
	}
}

// waitClosed reads conn until the server closes it (EOF or an error); the
// test's timeout bounds the wait. It returns what the server sent.
func waitClosed(conn net.Conn) string {
	b, _ := io.ReadAll(conn)
	return string(b)
}

// TestSlowBodyHoldsNoShard: a client that sends a PutRecord's headers and
// half its body, then stalls, holds no shard: other PutRecords to the same
// (only) shard complete while it stalls, and its record is never written.
func TestSlowBodyHoldsNoShard(t *testing.T) {
	ep := serveFor(t, fastOptions(), nil) // default timeouts: the stall outlasts the test
	c, _ := sdkClient("http://"+ep.plain.String(), h1Transport(nil))
	createActiveStream(t, c, "slow")
	conn, err := net.Dial("tcp", ep.plain.String())
	if err != nil {
		t.Fatal(err)
	}
	body := putRecordBody("slow")
	if _, err := io.WriteString(conn, requestHead(len(body))+body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	// The stall lasts until the close below (the read timeout is minutes),
	// so every put runs while a handler waits for the rest of its body.
	for i := 1; i <= 3; i++ {
		if n := putAndCount(t, c, "slow", "fast"); n != i {
			t.Fatalf("after %d puts the shard holds %d records", i, n)
		}
	}
	conn.Close()
	if n := putAndCount(t, c, "slow", "fast"); n != 4 {
		t.Fatalf("the shard holds %d records, want 4 (none from the stalled client)", n)
	}
}

// TestMisbehavingClientsCutOff: with small timeouts, each misbehaving
// client is disconnected, and the server keeps serving well-behaved ones.
func TestMisbehavingClientsCutOff(t *testing.T) {
	o := selfSignedOptions(t)
	o.hardening.readHeaderTimeout = 200 * time.Millisecond
	o.hardening.readTimeout = 300 * time.Millisecond
	o.hardening.idleTimeout = 200 * time.Millisecond
	ep := serveFor(t, o, nil)
	tc := trusting(t, ep.caFile)
	c, _ := sdkClient("https://"+ep.tls.String(), h2Transport(tc))
	createActiveStream(t, c, "s")
	body := putRecordBody("s")
	dialPlain := func(t *testing.T) net.Conn {
		conn, err := net.Dial("tcp", ep.plain.String())
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	dialTLS := func(t *testing.T) net.Conn {
		conn, err := tls.Dial("tcp", ep.tls.String(), tc)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	endless := strings.Repeat("X-Slow: y\r\n", 1000)
	for _, tt := range []struct {
		name  string
		dial  func(*testing.T) net.Conn
		first string // sent at once
		slow  string // then trickled
	}{
		{"slowloris", dialPlain, "POST / HTTP/1.1\r\nHost: localhost\r\n", endless},
		{"slowloris over TLS", dialTLS, "POST / HTTP/1.1\r\nHost: localhost\r\n", endless},
		{"slow body", dialPlain, requestHead(len(body)) + body[:4], body[4 : len(body)-1]},
		{"slow body over TLS", dialTLS, requestHead(len(body)) + body[:4], body[4 : len(body)-1]},
		{"no TLS handshake", func(t *testing.T) net.Conn {
			conn, err := net.Dial("tcp", ep.tls.String())
			if err != nil {
				t.Fatal(err)
			}
			return conn
		}, "", ""},
		{"idle keep-alive", dialPlain, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := tt.dial(t)
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			if _, err := io.WriteString(conn, tt.first); err != nil {
				t.Fatal(err)
			}
			go trickle(conn, tt.slow, stop)
			got := waitClosed(conn)
			if strings.Contains(got, "200 OK") && !strings.Contains(tt.name, "idle") {
				t.Fatalf("served: %q", got)
			}
		})
	}
	if n := putAndCount(t, c, "s", "fast"); n != 1 {
		t.Fatalf("the shard holds %d records, want 1 (none from the slow clients)", n)
	}
}

// TestSlowBodyHTTP2: an HTTP/2 stream whose body stalls is ended by the
// read timeout with an error answer, and writes nothing.
func TestSlowBodyHTTP2(t *testing.T) {
	o := fastOptions()
	o.hardening.readTimeout = 300 * time.Millisecond
	ep := serveFor(t, o, nil)
	c, _ := sdkClient("http://"+ep.plain.String(), h2Transport(nil))
	createActiveStream(t, c, "s")
	body := putRecordBody("s")
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, body[:10]) // then nothing, ever
	req, _ := http.NewRequest(http.MethodPost, "http://"+ep.plain.String()+"/", pr)
	head, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(requestHead(len(body)))))
	req.Header, req.ContentLength = head.Header, int64(len(body))
	res, err := (&http.Client{Transport: h2Transport(nil)}).Do(req)
	if err == nil {
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK || res.ProtoMajor != 2 {
			t.Fatalf("slow body answered %s %d: %s", res.Proto, res.StatusCode, msg)
		}
	}
	if n := putAndCount(t, c, "s", "fast"); n != 1 {
		t.Fatalf("the shard holds %d records, want 1", n)
	}
}

// TestMaxConnections: beyond --max-connections a connection is not
// accepted (its request is not served) until another closes.
func TestMaxConnections(t *testing.T) {
	o := fastOptions()
	o.hardening.maxConnections = 2
	ep := serveFor(t, o, nil)
	const health = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
	roundTrip := func(conn net.Conn, br *bufio.Reader) error {
		if _, err := io.WriteString(conn, health); err != nil {
			return err
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		return res.Body.Close()
	}
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		conn, err := net.Dial("tcp", ep.plain.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		if err := roundTrip(conn, br); err != nil {
			t.Fatal(err)
		}
		conns, readers = append(conns, conn), append(readers, br)
	}
	third, err := net.Dial("tcp", ep.plain.String()) // the kernel's backlog takes it
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	served := make(chan error, 1)
	go func() { served <- roundTrip(third, bufio.NewReader(third)) }()
	// A request on an accepted connection is served meanwhile; the third
	// connection's must not be, however long it waits.
	if err := roundTrip(conns[1], readers[1]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		t.Fatalf("a third connection was served with --max-connections=2 (%v)", err)
	default:
	}
	conns[0].Close()
	if err := <-served; err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
}

// h2conn is a raw cleartext HTTP/2 client connection that breaks rules on
// purpose.
type h2conn struct {
	t   *testing.T
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2conn {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c := &h2conn{t: t, fr: http2.NewFramer(conn, conn)}
	c.enc = hpack.NewEncoder(&c.buf)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// headers encodes a POST to / with extra header fields.
func (c *h2conn) headers(extra ...hpack.HeaderField) []byte {
	c.buf.Reset()
	for _, f := range append([]hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "localhost"}}, extra...) {
		c.enc.WriteField(f)
	}
	return bytes.Clone(c.buf.Bytes())
}

// writeHeaders sends a header block on stream id, in CONTINUATION frames
// past the 16 KiB frame size.
func (c *h2conn) writeHeaders(id uint32, block []byte, endStream bool) {
	const frame = 16 << 10
	first := block[:min(len(block), frame)]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) <= frame}); err != nil {
		c.t.Fatal(err)
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), frame)
		if err := c.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			c.t.Fatal(err)
		}
		rest = rest[n:]
	}
}

// until reads frames (acknowledging the server's settings) until match
// says a frame is the one awaited, and returns it; the connection ending
// first fails the test.
func (c *h2conn) until(what string, match func(http2.Frame) bool) http2.Frame {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("connection ended before %s: %v", what, err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			if err := c.fr.WriteSettingsAck(); err != nil {
				c.t.Fatal(err)
			}
		}
		if match(f) {
			return f
		}
	}
}

// TestHTTP2Limits: an HTTP/2 client that opens more streams than
// --http2-max-streams, sends a header list over --max-header-bytes, or
// grows the HPACK table past its limit is refused as HTTP/2 says.
func TestHTTP2Limits(t *testing.T) {
	o := fastOptions()
	o.hardening.http2MaxStreams = 2
	o.hardening.maxHeaderBytes = 4096
	ep := serveFor(t, o, nil)
	addr := ep.plain.String()

	t.Run("streams", func(t *testing.T) {
		c := dialH2(t, addr)
		c.until("the server's settings", func(f http2.Frame) bool { _, ok := f.(*http2.SettingsFrame); return ok })
		for _, id := range []uint32{1, 3, 5} { // bodies never sent: all stay open
			c.writeHeaders(id, c.headers(), false)
		}
		f := c.until("a reset", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if id := f.Header().StreamID; id != 5 {
			t.Fatalf("stream %d reset, want the third (5)", id)
		}
	})
	t.Run("header list", func(t *testing.T) {
		c := dialH2(t, addr)
		var limit uint32
		c.until("the server's settings", func(f http2.Frame) bool {
			s, ok := f.(*http2.SettingsFrame)
			if ok {
				limit, _ = s.Value(http2.SettingMaxHeaderListSize)
			}
			return ok
		})
		if limit == 0 || limit > 16<<10 {
			t.Fatalf("advertised header list size %d, want about --max-header-bytes", limit)
		}
		// Just over the advertised limit: the stream is answered 431 (far
		// over, the server ends the connection instead).
		c.writeHeaders(1, c.headers(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("a", int(limit))}), true)
		dec := hpack.NewDecoder(4096, nil)
		f := c.until("an answer", func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok })
		fields, err := dec.DecodeFull(f.(*http2.HeadersFrame).HeaderBlockFragment())
		if err != nil || len(fields) == 0 || fields[0].Value != "431" {
			t.Fatalf("answer %v %v, want :status 431", fields, err)
		}
	})
	t.Run("header table", func(t *testing.T) {
		c := dialH2(t, addr)
		c.enc.SetMaxDynamicTableSizeLimit(1 << 20)
		c.enc.SetMaxDynamicTableSize(1 << 20) // announces a 1 MiB table
		c.writeHeaders(1, c.headers(), true)
		f := c.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
		if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeCompression {
			t.Fatalf("GOAWAY %v, want COMPRESSION_ERROR", code)
		}
	})
	t.Run("HTTP/1.1 header bytes", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/health", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 20000))
		res, err := (&http.Client{Transport: h1Transport(nil)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", res.StatusCode)
		}
	})
}
