package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"sigs.k8s.io/yaml"
)

// ErrAuthFile is wrapped by every error about the auth file's contents.
var ErrAuthFile = errors.New("invalid auth file")

// fileShape is the --auth-file document. YAML is read by converting it to
// JSON first (sigs.k8s.io/yaml), so a JSON file is read the same way and
// policies written as YAML maps arrive as JSON.
type fileShape struct {
	Credentials []fileCredential `json:"credentials"`
}

type fileCredential struct {
	AccessKeyID     string            `json:"access_key_id"`
	SecretAccessKey string            `json:"secret_access_key"`
	SessionToken    string            `json:"session_token"`
	AccountID       flexString        `json:"account_id"`
	User            string            `json:"user"`
	Policies        []json.RawMessage `json:"policies"`
}

// flexString takes a JSON string or number: an unquoted YAML account id
// (111122223333) arrives as a number.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("account_id must be a string of 12 digits: %w", err)
	}
	*f = flexString(n.String())
	return nil
}

// credential is one access key, ready to verify with.
type credential struct {
	secret string
	token  string
	id     Identity
}

// keyring maps access key ids to credentials. It is never modified after
// loadKeyring returns: Reload swaps in a new one.
type keyring map[string]*credential

// loadKeyring reads and checks the auth file at path.
func loadKeyring(path, defaultAccount string) (keyring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read auth file: %w", err)
	}
	return parseKeyring(raw, defaultAccount)
}

// parseKeyring parses an auth file's bytes (YAML or JSON).
func parseKeyring(raw []byte, defaultAccount string) (keyring, error) {
	var f fileShape
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthFile, err)
	}
	keys := make(keyring, len(f.Credentials))
	for i, c := range f.Credentials {
		cred, err := c.build(defaultAccount)
		if err != nil {
			return nil, fmt.Errorf("%w: credentials[%d]: %w", ErrAuthFile, i, err)
		}
		if _, dup := keys[c.AccessKeyID]; dup {
			return nil, fmt.Errorf("%w: credentials[%d]: access_key_id %q appears twice", ErrAuthFile, i, c.AccessKeyID)
		}
		keys[c.AccessKeyID] = cred
	}
	return keys, nil
}

func (c fileCredential) build(defaultAccount string) (*credential, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return nil, errors.New("access_key_id and secret_access_key are required")
	}
	account := string(c.AccountID)
	if account == "" {
		account = defaultAccount
	}
	if !isAccountID(account) {
		return nil, fmt.Errorf("account_id %q is not 12 digits (quote it in YAML if it starts with 0)", account)
	}
	policies := make([]json.RawMessage, 0, len(c.Policies))
	for j, p := range c.Policies {
		doc, err := policyJSON(p)
		if err != nil {
			return nil, fmt.Errorf("policies[%d]: %w", j, err)
		}
		policies = append(policies, doc)
	}
	return &credential{secret: c.SecretAccessKey, token: c.SessionToken, id: Identity{
		AccessKeyID: c.AccessKeyID, Account: account, User: c.User, Policies: policies,
	}}, nil
}

// policyJSON returns a policy document as a JSON object: a YAML or JSON
// map as it is, a string holding a JSON document decoded.
func policyJSON(p json.RawMessage) (json.RawMessage, error) {
	p = bytes.TrimSpace(p)
	if len(p) > 0 && p[0] == '"' {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, err
		}
		p = bytes.TrimSpace([]byte(s))
	}
	if len(p) == 0 || p[0] != '{' || !json.Valid(p) {
		return nil, errors.New("a policy must be a JSON or YAML object")
	}
	return p, nil
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}
