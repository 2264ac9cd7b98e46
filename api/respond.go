package api

import (
	"net/http"
	"strconv"

	"github.com/shardlog/shardlog/api/wire"
)

// writeOutput sends a successful result; nil means an empty 200 body, as AWS
// answers operations without output members.
func (s *Server) writeOutput(rc *reqCtx, out any) {
	if out == nil {
		s.writeBody(rc, http.StatusOK, nil)
		return
	}
	body, err := rc.codec.Encode(out)
	if err != nil {
		s.writeError(rc, internalFailure(err))
		return
	}
	s.writeBody(rc, http.StatusOK, body)
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
