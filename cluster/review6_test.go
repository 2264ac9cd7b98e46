package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shardlog/shardlog/replica"
)

// TestNotStoredRefunds (review 6 #3): the proposal errors that give a
// write's charge back are exactly those that say it was not stored,
// wrapped or not: a leader's back-pressure and a replica gone included.
func TestNotStoredRefunds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{replica.ErrNotLeader, true},
		{replica.ErrDropped, true},
		{replica.ErrOverloaded, true},
		{fmt.Errorf("replica: %w 9", replica.ErrUnknownGroup), true},
		{errIndeterminate, false},
		{replica.ErrStopped, false},
		{errSealed, false},
		{nil, false},
	} {
		if got := notStored(tc.err); got != tc.want {
			t.Errorf("notStored(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestAdminUnavailableIsNotOverload (review 6 #3): a 503 from an admin
// request (join, remove-node: the metadata leader cannot be reached) is
// not taken for a leader's back-pressure; a 503 from writeFailure is.
func TestAdminUnavailableIsNotOverload(t *testing.T) {
	n := &Node{client: http.DefaultClient}
	n.keys.Store(&secretKeys{})
	for _, tc := range []struct {
		name     string
		answer   func(http.ResponseWriter)
		overload bool
	}{
		{"admin", func(w http.ResponseWriter) { writeAdmin(w, nil, errNoLeader) }, false},
		{"overloaded leader", func(w http.ResponseWriter) { n.writeFailure(w, 1, replica.ErrOverloaded) }, true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.answer(w) }))
		err := n.post(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "join", nil, &struct{}{})
		srv.Close()
		if err == nil || errors.Is(err, replica.ErrOverloaded) != tc.overload {
			t.Errorf("%s: %v, want overload %v", tc.name, err, tc.overload)
		}
	}
}
