package channel

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/shardlog/shardlog/storage"
)

// DefaultKeyTemplate is AWS's default S3 output key template for channels.
const DefaultKeyTemplate = "kinesis-channel/!{channel-name}/!{channel-id}/!{yyyy}/!{MM}/!{dd}/!{HH}/" +
	"!{channel-name}-!{channel-id}-!{yyyy}-!{MM}-!{dd}-!{HH}-!{mm}!{extension}"

// DefaultErrorPrefix is the key prefix of dead-letter objects when the
// channel names none (AWS's default prefix is not documented; this is
// shardlog's).
const DefaultErrorPrefix = "error/"

// templateVars are the variables AWS documents for channel key templates.
var templateVars = []string{"channel-name", "channel-id", "yyyy", "MM", "dd", "HH", "mm", "extension"}

// maxKeyTemplate is the longest template accepted (S3 keys are at most
// 1,024 bytes; shardlog appends a suffix to each).
const maxKeyTemplate = 900

// ValidateKeyTemplate checks an OutputKeyTemplate: known !{variables}
// only, literals of [a-zA-Z0-9/_\-.+=], no path traversal, not starting or
// ending with "/". AWS's exact rules for Kinesis channels are not
// documented; these are the ones AWS documents for MSK's delivery channels.
func ValidateKeyTemplate(t string) error {
	switch {
	case t == "" || len(t) > maxKeyTemplate:
		return fmt.Errorf("the template must have 1 to %d characters", maxKeyTemplate)
	case strings.HasPrefix(t, "/") || strings.HasSuffix(t, "/"):
		return errors.New("the template must not start or end with /")
	case strings.Contains(t, "..") || strings.Contains(t, "./") || strings.Contains(t, "//"):
		return errors.New("the template must not contain .., ./ or //")
	}
	rest := t
	for rest != "" {
		i := strings.Index(rest, "!{")
		lit := rest
		if i >= 0 {
			lit = rest[:i]
		}
		for _, c := range lit {
			if !keyLiteral(c) {
				return fmt.Errorf("the character %q is not allowed outside a variable", c)
			}
		}
		if i < 0 {
			break
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return errors.New("a !{ has no closing }")
		}
		if name := rest[i+2 : i+end]; !known(name) {
			return fmt.Errorf("unknown variable !{%s}", name)
		}
		rest = rest[i+end+1:]
	}
	return nil
}

func keyLiteral(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/_-.+=", c)
}

func known(name string) bool {
	for _, v := range templateVars {
		if v == name {
			return true
		}
	}
	return false
}

// objectKey renders a channel's key template for object number n, whose
// oldest record arrived at t. AWS appends a unique suffix to every key;
// shardlog's is the object's number (zero-padded, so keys sort in delivery
// order), placed before the extension when the template ends with it. The
// key depends only on n and t, so a batch written again after a crash gets
// the same key.
func objectKey(c storage.ChannelInfo, n uint64, t time.Time, ext string) string {
	tmpl := c.Config.KeyTemplate
	if tmpl == "" {
		tmpl = DefaultKeyTemplate
	}
	t = t.UTC()
	suffix := fmt.Sprintf("-%020d", n)
	r := strings.NewReplacer("!{channel-name}", c.Name, "!{channel-id}", c.ID,
		"!{yyyy}", t.Format("2006"), "!{MM}", t.Format("01"), "!{dd}", t.Format("02"),
		"!{HH}", t.Format("15"), "!{mm}", t.Format("04"))
	key := r.Replace(tmpl)
	if strings.HasSuffix(key, "!{extension}") {
		return strings.TrimSuffix(key, "!{extension}") + suffix + ext
	}
	return strings.ReplaceAll(key, "!{extension}", ext) + suffix
}

// bucketOf is the bucket an S3 bucket ARN (arn:aws:s3:::BUCKET) names.
func bucketOf(arn string) string {
	if i := strings.LastIndex(arn, ":::"); i >= 0 {
		return arn[i+3:]
	}
	return arn
}

// extension is the file extension of a channel's objects: by record format
// (AWS does not document it; these are shardlog's), then compression.
func extension(cfg storage.ChannelConfig) string {
	ext := ".json"
	if cfg.RecordFormat == "STRING" {
		ext = ".txt"
	}
	switch cfg.Compression {
	case "GZIP":
		ext += ".gz"
	case "ZSTD":
		ext += ".zst"
	}
	return ext
}

// envelope is one record as shardlog writes it when the record's own bytes
// cannot stand alone: BYTE_ARRAY records, and records in the dead-letter
// queue (with ErrorMessage).
type envelope struct {
	SequenceNumber              string
	PartitionKey                string
	ApproximateArrivalTimestamp int64 // unix milliseconds
	Data                        []byte
	ShardId                     string
	ErrorMessage                string `json:",omitempty"`
}

// appendRecord appends one record to an object body in the channel's
// record format, one record per line: JSON records compacted onto one line,
// STRING records as they are, BYTE_ARRAY records as an envelope with the
// data in base64. A JSON record that is not JSON, or a STRING record that is
// not UTF-8, goes to the dead-letter body instead, as AWS validates them.
func appendRecord(body, dlq *bytes.Buffer, format, shardID string, r storage.Record) error {
	switch format {
	case "JSON":
		if json.Valid(r.Data) {
			if err := json.Compact(body, r.Data); err != nil {
				return err
			}
			return body.WriteByte('\n')
		}
		return appendEnvelope(dlq, shardID, r, "the record is not valid JSON")
	case "STRING":
		if utf8.Valid(r.Data) {
			body.Write(r.Data)
			return body.WriteByte('\n')
		}
		return appendEnvelope(dlq, shardID, r, "the record is not valid UTF-8")
	}
	return appendEnvelope(body, shardID, r, "")
}

func appendEnvelope(b *bytes.Buffer, shardID string, r storage.Record, errMsg string) error {
	line, err := json.Marshal(envelope{SequenceNumber: r.SequenceNumber, PartitionKey: r.PartitionKey,
		ApproximateArrivalTimestamp: r.Arrival.UnixMilli(), Data: r.Data, ShardId: shardID, ErrorMessage: errMsg})
	if err != nil {
		return err
	}
	b.Write(line)
	return b.WriteByte('\n')
}

// compress applies the channel's CompressionType.
func compress(kind string, body []byte) ([]byte, error) {
	var out bytes.Buffer
	switch kind {
	case "GZIP":
		w := gzip.NewWriter(&out)
		if _, err := w.Write(body); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	case "ZSTD":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(body); err != nil {
			w.Close()
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	default:
		return body, nil
	}
	return out.Bytes(), nil
}
