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
	rc.errMsg = e.Type + ": " + e.Message
	s.writeBody(rc, e.Status, rc.codec.EncodeError(e))
}

func (s *Server) writeBody(rc *reqCtx, status int, body []byte) {
	h := rc.w.Header()
	h.Set("Content-Type", rc.codec.ContentType())
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rc.status, rc.wrote = status, true
	rc.w.WriteHeader(status)
	_, _ = rc.w.Write(body)
}
