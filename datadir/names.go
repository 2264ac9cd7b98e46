package datadir

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
)

// ShardPrefix starts every canonical shard ID and shard directory name.
const ShardPrefix = "shardId-"

// createdDigits is the width of the hex creation time in a stream directory
// name: every int64 fits in 16 hex digits.
const createdDigits = 16

// StreamDir is the name of the directory of the stream name created at
// createdNs (unix nanoseconds, never negative).
func StreamDir(name string, createdNs int64) string {
	return fmt.Sprintf("%s-%016x", name, createdNs)
}

// ParseStreamDir splits a name made by StreamDir into the stream's name and
// creation time. It accepts exactly that form (16 lowercase hex digits after
// the last '-', a non-empty name before it), so a parsed name formats back to
// itself.
func ParseStreamDir(dir string) (name string, createdNs int64, ok bool) {
	i := len(dir) - createdDigits - 1
	if i < 1 || dir[i] != '-' {
		return "", 0, false
	}
	hex := dir[i+1:]
	for j := 0; j < len(hex); j++ {
		if c := hex[j]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", 0, false
		}
	}
	n, err := strconv.ParseUint(hex, 16, 63)
	if err != nil {
		return "", 0, false
	}
	return dir[:i], int64(n), true
}

// ShardID is the canonical ID of the shard with index i, which is also the
// name of its directory.
func ShardID(i uint32) string { return fmt.Sprintf("%s%012d", ShardPrefix, i) }

// EncodedShardID renders a shard index read from a sequence number as AWS's
// messages name it: the 32-bit field is a signed int in Java, and %012d keeps
// the sign (0x80000000 is "shardId--02147483648"). Go's %012d pads the same
// way, the sign first. For the indexes of real shards it equals ShardID.
func EncodedShardID(i uint32) string { return fmt.Sprintf("%s%012d", ShardPrefix, int32(i)) }

// MaxShardIndex is the largest shard index a shard ID can name: AWS reads
// the number as a signed 32-bit integer.
const MaxShardIndex = math.MaxInt32

// ParseShardID resolves a shard ID leniently, as AWS does: the text after the
// last '-' (all of it when there is none) must be decimal digits, leading
// zeros allowed, of a value in 0..MaxShardIndex. So "shardId-000000000001",
// "shardId-1", "x-1" and "1" all name shard 1. Every API and tool that takes
// a shard ID uses this one rule.
func ParseShardID(id string) (uint32, bool) {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		id = id[i+1:]
	}
	if id == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + uint64(c-'0'); n > MaxShardIndex {
			return 0, false
		}
	}
	return uint32(n), true
}

// ParseShardDir parses the name of a shard directory: a canonical shard ID,
// exactly as ShardID makes it, so that two names never denote one shard.
func ParseShardDir(name string) (uint32, bool) {
	i, ok := ParseShardID(name)
	if !ok || name != ShardID(i) {
		return 0, false
	}
	return i, true
}

// IndexKey is the name of a shard in index.db, and its directory relative to
// the streams directory: "<stream dir>/<shard dir>".
func IndexKey(streamDir string, shard uint32) string {
	return streamDir + "/" + ShardID(shard)
}

// ShardKey is the key every segment header of the shard with index key key
// carries: the FNV-64a of the key.
func ShardKey(indexKey string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(indexKey))
	return h.Sum64()
}
