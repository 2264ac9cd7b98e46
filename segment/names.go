package segment

import (
	"fmt"
	"strconv"
)

// FileExt is the extension of segment files.
const FileExt = ".seg"

const (
	seqDigits = 20 // decimal digits of a uint64
	idDigits  = 16 // hex digits of a uint64
	nameLen   = seqDigits + 1 + idDigits + len(FileExt)
)

// FileName is the name of a segment: its first sequence, zero-padded so that
// names sort by sequence, and its unique segment ID, which tells apart two
// files that start at the same sequence (a salvaged rewrite, say).
func FileName(firstSeq, segID uint64) string {
	return fmt.Sprintf("%020d-%016x%s", firstSeq, segID, FileExt)
}

// ParseFileName parses a name made by FileName. It accepts exactly that form
// (fixed widths, lowercase hex), so a parsed name always formats back to itself.
func ParseFileName(name string) (firstSeq, segID uint64, ok bool) {
	if len(name) != nameLen || name[seqDigits] != '-' || name[nameLen-len(FileExt):] != FileExt {
		return 0, 0, false
	}
	seqPart, idPart := name[:seqDigits], name[seqDigits+1:seqDigits+1+idDigits]
	if !all(seqPart, isDigit) || !all(idPart, isLowerHex) {
		return 0, 0, false
	}
	firstSeq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil { // more than MaxUint64
		return 0, 0, false
	}
	segID, err = strconv.ParseUint(idPart, 16, 64)
	if err != nil {
		return 0, 0, false
	}
	return firstSeq, segID, true
}

func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isLowerHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' }

func all(s string, pred func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !pred(s[i]) {
			return false
		}
	}
	return true
}
