package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Admin is an operator's client of a node's internal endpoints (the
// `shardlog cluster` commands): it authenticates with the cluster token.
type Admin struct {
	// Endpoint is any node's client API: host:port or an http:// URL; for
	// a cluster with peer TLS, a node's internal https:// listener, which
	// Client must then reach with a certificate of the peer CA.
	Endpoint string
	// Token is the cluster's --cluster-token.
	Token  string
	Client *http.Client
	// PeerTLS says the cluster uses peer TLS (the operator gave the
	// --peer-tls-* files): the endpoint must then be an https:// internal
	// listener, for the forward key the token derives is a cluster
	// credential that must not cross the network in clear.
	PeerTLS bool
}

// Nodes lists the cluster's nodes as the endpoint node knows them.
func (a Admin) Nodes(ctx context.Context) ([]NodeInfo, error) {
	var out []NodeInfo
	return out, a.call(ctx, http.MethodGet, "nodes", nil, &out)
}

// RemoveNode marks node leaving (its replicas then move away) and reports
// it; calling it again reports its progress.
func (a Admin) RemoveNode(ctx context.Context, node uint64) (NodeInfo, error) {
	var out NodeInfo
	return out, a.call(ctx, http.MethodPost, "remove-node", mustJSON(removeRequest{Node: node}), &out)
}

func (a Admin) call(ctx context.Context, method, path string, body []byte, out any) error {
	base := a.Endpoint
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if a.PeerTLS && !strings.HasPrefix(strings.ToLower(base), "https://") {
		return fmt.Errorf("with --peer-tls-*, --endpoint must be a node's internal mutual-TLS listener, https://host:port (its --advertise); refusing to send the cluster credential in clear to %s", base)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+pathPrefix+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(AuthHeader, ForwardAuth(a.Token))
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
