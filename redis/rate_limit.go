package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
)

// RateLimiter is the cluster-wide per-user limit: GCRA in one Lua call on one key per
// user, so every node shares a user's budget and a limited user costs one round trip.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	prefix  string
}

// NewRateLimiter returns a RateLimiter with keys rate:<prefix>:limit:{<userId>}. client may
// be an auto-pipeliner: every guarded draw takes a permit, and under a crowd the permits
// of concurrent draws then share round trips.
func NewRateLimiter(client goredis.Cmdable, prefix string) *RateLimiter {
	if prefix != "" {
		prefix += ":"
	}
	return &RateLimiter{limiter: redis_rate.NewLimiter(client), prefix: prefix + "limit:"}
}

// Allow takes one permit of userID's bucket of perSecond permits a second and burst at
// once, reporting false when there is none.
func (l *RateLimiter) Allow(ctx context.Context, userID string, perSecond float64, burst int) (bool, error) {
	if perSecond <= 0 || burst < 1 {
		return false, fmt.Errorf("rate limit %v/s burst %d: want a positive rate and burst", perSecond, burst)
	}
	// One permit per emission interval: GCRA needs only the interval and the burst.
	period := time.Duration(float64(time.Second) / perSecond)
	if period <= 0 {
		period = time.Nanosecond
	}
	res, err := l.limiter.Allow(ctx, l.prefix+"{"+userID+"}", redis_rate.Limit{Rate: 1, Burst: burst, Period: period})
	if err != nil {
		return false, fmt.Errorf("cluster rate limit: %w", err)
	}
	return res.Allowed > 0, nil
}
