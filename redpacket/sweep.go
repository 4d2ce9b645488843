package redpacket

import (
	"context"
	"time"

	"github.com/bigmarket/bigmarket/internal/tick"
)

// Lease is an exclusive, expiring claim on a job's name, shared by the nodes; the redis
// adapter (redis.NewLeases) implements it.
type Lease interface {
	// Claim takes name for ttl; false when another node holds it. The token releases it.
	Claim(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	// Release gives name back if token still holds it.
	Release(ctx context.Context, name, token string) error
}

// sweepLease names the sweep's lease.
const sweepLease = "red_packet_sweep"

// SweepLeased runs Sweep every interval until ctx ends, on one node at a time: a run
// that cannot claim the lease does nothing, and another node takes over when the
// holder's lease lapses (interval + 15s after its claim) or is released at the end of a
// run. So a node that dies holding it delays the refunds by at most interval + 15s plus
// the next node's tick. A sweep that outlives its lease is harmless: a second sweep may
// run beside it, and every step of a refund is idempotent (the close in Redis, the grabs
// by their key, the refund once by its state and out_business_no).
func (s *Service) SweepLeased(ctx context.Context, lease Lease, interval time.Duration) error {
	return tick.Every(ctx, interval, func(ctx context.Context) {
		s.sweepOnce(ctx, lease, tick.LeaseTTL(interval))
	})
}

// sweepOnce sweeps if it can claim the lease for ttl.
func (s *Service) sweepOnce(ctx context.Context, lease Lease, ttl time.Duration) {
	token, ok, err := lease.Claim(ctx, sweepLease, ttl)
	if err != nil || !ok {
		return
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx), sweepLease, token) }()
	if n, err := s.Sweep(ctx); err != nil || n > 0 {
		s.opts.Logger.Info("red packet sweep", "closed", n, "err", err)
	}
}
