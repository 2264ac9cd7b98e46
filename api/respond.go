package api

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/shardlog/shardlog/api/wire"
)

// writeOutput sends a successful result; nil means an empty 200 body, as AWS
// answers operations without output members.
func (s *Server) writeOutput(rc *reqCtx, out any) {
	if out == nil {
		s.writeBody(rc, http.StatusOK, nil)
		return
	}
	buf := s.outBufs.get()
	body, err := rc.codec.AppendEncode(*buf, out)
	if err != nil {
		s.outBufs.put(buf)
		s.writeError(rc, internalFailure(err))
		return
	}
	s.writeBody(rc, http.StatusOK, body)
	*buf = body
	s.outBufs.put(buf) // Write has copied or sent body: net/http keeps no reference
}

// bufPool reuses response buffers. A GetRecords page of 10 MiB renders to
// about 14 MB of JSON; allocating that per call cost a fifth of GetRecords'
// server CPU in zeroing the new memory (BENCHMARKS.md "Per-request cost").
// Buffers above maxPooledBuf are let go, so one huge answer does not stay.
type bufPool struct{ p sync.Pool }

const maxPooledBuf = 16 << 20

func (b *bufPool) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return v
	}
	buf := make([]byte, 0, 512)
	return &buf
}

func (b *bufPool) put(buf *[]byte) {
	if cap(*buf) <= maxPooledBuf {
		*buf = (*buf)[:0]
		b.p.Put(buf)
	}
}

func (s *Server) writeError(rc *reqCtx, e *wire.Error) {
	s.writeReply(rc, wire.ErrorReply(rc.codec, e))
}

// writeReply sends an answer whose bytes wire has decided, Content-Type
// included (none at all when it is "").
func (s *Server) writeReply(rc *reqCtx, rep *wire.Reply) {
	rc.errMsg = rep.Type + ": " + rep.Message
	rc.errType = rep.Type
	s.send(rc, rep.Status, rep.ContentType, rep.Body)
}

func (s *Server) writeBody(rc *reqCtx, status int, body []byte) {
	s.send(rc, status, rc.codec.ContentType(), body)
}

func (s *Server) send(rc *reqCtx, status int, contentType string, body []byte) {
	h := rc.w.Header()
	if contentType == "" {
		h["Content-Type"] = nil // present but empty: net/http then sniffs none
	} else {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rc.status, rc.wrote = status, true
	rc.w.WriteHeader(status)
	_, _ = rc.w.Write(body)
}
