package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Leases are short-lived exclusive claims on job names: the node that claims a job's
// name runs it until the claim expires or is released, so that one node at a time runs
// a job every node schedules (the red packet and pending draw sweeps). After a crash the
// claim expires and another node takes the job.
type Leases struct {
	client goredis.UniversalClient
	prefix string
}

// NewLeases returns Leases with keys <prefix>:lease:{<name>}.
func NewLeases(client goredis.UniversalClient, prefix string) *Leases {
	if prefix != "" {
		prefix += ":"
	}
	return &Leases{client: client, prefix: prefix + "lease:"}
}

func (l *Leases) key(name string) string { return l.prefix + "{" + name + "}" }

// Claim takes the name for ttl. It returns a token for Release and false when another
// node holds the name.
func (l *Leases) Claim(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	err := l.client.SetArgs(ctx, l.key(name), token, goredis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, goredis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("claim lease %s: %w", name, err)
	}
	return token, true, nil
}

// releaseScript deletes a lease only if it still holds the caller's token.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Release gives the name back early; a lease that expired and was taken by another node
// is left alone.
func (l *Leases) Release(ctx context.Context, name, token string) error {
	if err := releaseScript.Run(ctx, l.client, []string{l.key(name)}, token).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
