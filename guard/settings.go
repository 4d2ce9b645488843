// Package guard is the front line of the draw: the degrade switch, per-user rate limits
// (a local token bucket in front of a cluster-wide GCRA), a blacklist for users who keep
// hitting the limit, a time budget with a commit point and a circuit breaker. Its
// settings are dynamic: every node applies a change to them as soon as the shared config
// store reports it.
//
// Answers are honest: a call over its time budget (ErrTimeout) took nothing, because a
// call commits (Commit) before it takes what it cannot give back and a call that has
// committed is waited for; one whose outcome is still unknown after the commit timeout
// is ErrOutcomeUnknown, to be retried. A system failure never counts against a user: a
// rate-limit refusal after the user's last call failed for the system's reasons does not
// count towards the blacklist.
package guard

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Keys of the dynamic settings, as big-market's DCC names them where it has them.
const (
	KeyDegradeSwitch     = "degradeSwitch"
	KeyRateLimiterSwitch = "rateLimiterSwitch"
	KeyPermitsPerSecond  = "rateLimiterPermitsPerSecond"
	KeyBurst             = "rateLimiterBurst"
	KeyBlacklistCount    = "rateLimiterBlacklistCount"
	KeyBlacklistDuration = "rateLimiterBlacklistDuration"
	KeyDrawTimeout       = "drawTimeout"
	// KeyIPPermitsPerSecond and KeyIPBurst are the per-IP limit at the front line; a rate
	// of 0 turns it (and the IP blacklist) off.
	KeyIPPermitsPerSecond = "ipRateLimitPerSecond"
	KeyIPBurst            = "ipRateLimitBurst"
)

// Keys lists every dynamic setting, in a stable order.
var Keys = []string{
	KeyDegradeSwitch, KeyRateLimiterSwitch, KeyPermitsPerSecond, KeyBurst,
	KeyBlacklistCount, KeyBlacklistDuration, KeyDrawTimeout, KeyIPPermitsPerSecond, KeyIPBurst,
}

// Switch values, as big-market's DCC spells them.
const (
	Open  = "open"
	Close = "close"
)

// ErrBadSetting is an unknown key or a value a key does not accept.
var ErrBadSetting = errors.New("bad dynamic setting")

// Bounds of the settings: wide enough for any campaign, narrow enough that a typo cannot
// turn the front line off by accident.
const (
	MaxPermitsPerSecond  = 1_000_000
	MaxBurst             = 1_000_000
	MaxBlacklistCount    = 1_000_000
	MaxBlacklistDuration = 7 * 24 * time.Hour
	MinDrawTimeout       = 10 * time.Millisecond
	MaxDrawTimeout       = time.Minute
)

// Settings are the dynamic values the guard works with.
type Settings struct {
	// Degrade answers every guarded request at once, touching nothing (degradeSwitch open).
	Degrade bool
	// RateLimit turns the per-user limits and the blacklist on (rateLimiterSwitch open).
	RateLimit bool
	// PermitsPerSecond is each user's sustained rate, on one node and across the cluster.
	PermitsPerSecond float64
	// Burst is how many requests a user may make at once after a quiet spell.
	Burst int
	// BlacklistCount is how many rejections a user may collect before being blacklisted
	// on every node; 0 never blacklists.
	BlacklistCount int
	// BlacklistDuration is how long a blacklisting lasts (big-market: 24 hours).
	BlacklistDuration time.Duration
	// DrawTimeout is the time budget of a guarded call (big-market: 150 ms).
	DrawTimeout time.Duration
	// IPPermitsPerSecond is each client IP's sustained rate on one node over the spending
	// endpoints; 0 turns the per-IP limit and the IP blacklist off.
	IPPermitsPerSecond float64
	// IPBurst is how many requests a client IP may make at once; 0 means a second's worth
	// of IPPermitsPerSecond, at least 1.
	IPBurst int
}

// IPLimits reports whether the per-IP limit is on.
func (s Settings) IPLimits() bool { return s.IPPermitsPerSecond > 0 }

// IPBurstInForce is the burst of the per-IP buckets: IPBurst, or a second's worth of
// the rate when it is 0.
func (s Settings) IPBurstInForce() int {
	if s.IPBurst > 0 {
		return s.IPBurst
	}
	return max(1, int(math.Ceil(s.IPPermitsPerSecond)))
}

// DefaultSettings are the values a node starts with when neither its config nor the
// shared store says otherwise.
func DefaultSettings() Settings {
	return Settings{
		RateLimit:         true,
		PermitsPerSecond:  1,
		Burst:             5,
		BlacklistCount:    10,
		BlacklistDuration: 24 * time.Hour,
		DrawTimeout:       150 * time.Millisecond,
	}
}

// Validate reports the first value out of its bounds.
func (s Settings) Validate() error {
	switch {
	case !(s.PermitsPerSecond > 0) || s.PermitsPerSecond > MaxPermitsPerSecond:
		return fmt.Errorf("%s %v: want a number above 0 and at most %d: %w", KeyPermitsPerSecond, s.PermitsPerSecond, MaxPermitsPerSecond, ErrBadSetting)
	case s.Burst < 1 || s.Burst > MaxBurst:
		return fmt.Errorf("%s %d: want 1 to %d: %w", KeyBurst, s.Burst, MaxBurst, ErrBadSetting)
	case s.BlacklistCount < 0 || s.BlacklistCount > MaxBlacklistCount:
		return fmt.Errorf("%s %d: want 0 (never) to %d: %w", KeyBlacklistCount, s.BlacklistCount, MaxBlacklistCount, ErrBadSetting)
	case s.BlacklistDuration < time.Second || s.BlacklistDuration > MaxBlacklistDuration:
		return fmt.Errorf("%s %s: want 1s to %s: %w", KeyBlacklistDuration, s.BlacklistDuration, MaxBlacklistDuration, ErrBadSetting)
	case s.DrawTimeout < MinDrawTimeout || s.DrawTimeout > MaxDrawTimeout:
		return fmt.Errorf("%s %s: want %s to %s: %w", KeyDrawTimeout, s.DrawTimeout, MinDrawTimeout, MaxDrawTimeout, ErrBadSetting)
	case !(s.IPPermitsPerSecond >= 0) || s.IPPermitsPerSecond > MaxPermitsPerSecond:
		return fmt.Errorf("%s %v: want 0 (off) or a number above 0 and at most %d: %w", KeyIPPermitsPerSecond, s.IPPermitsPerSecond, MaxPermitsPerSecond, ErrBadSetting)
	case s.IPBurst < 0 || s.IPBurst > MaxBurst:
		return fmt.Errorf("%s %d: want 0 (a second's worth of the rate) to %d: %w", KeyIPBurst, s.IPBurst, MaxBurst, ErrBadSetting)
	}
	return nil
}

// With returns s with key set to value, validated; the text forms are those of Value.
func (s Settings) With(key, value string) (Settings, error) {
	bad := func(want string) error {
		return fmt.Errorf("%s %q: want %s: %w", key, value, want, ErrBadSetting)
	}
	switch key {
	case KeyDegradeSwitch, KeyRateLimiterSwitch:
		if value != Open && value != Close {
			return s, bad("open or close")
		}
		if key == KeyDegradeSwitch {
			s.Degrade = value == Open
		} else {
			s.RateLimit = value == Open
		}
	case KeyPermitsPerSecond, KeyIPPermitsPerSecond:
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return s, bad("a number of permits per second")
		}
		if key == KeyPermitsPerSecond {
			s.PermitsPerSecond = f
		} else {
			s.IPPermitsPerSecond = f
		}
	case KeyBurst, KeyBlacklistCount, KeyIPBurst:
		n, err := strconv.Atoi(value)
		if err != nil {
			return s, bad("an integer")
		}
		switch key {
		case KeyBurst:
			s.Burst = n
		case KeyBlacklistCount:
			s.BlacklistCount = n
		default:
			s.IPBurst = n
		}
	case KeyBlacklistDuration, KeyDrawTimeout:
		d, err := time.ParseDuration(value)
		if err != nil {
			return s, bad("a duration such as 150ms or 24h")
		}
		if key == KeyBlacklistDuration {
			s.BlacklistDuration = d
		} else {
			s.DrawTimeout = d
		}
	default:
		return s, fmt.Errorf("unknown key %q (known: %v): %w", key, Keys, ErrBadSetting)
	}
	return s, s.Validate()
}

// Value renders key's current value in the form With accepts.
func (s Settings) Value(key string) (string, bool) {
	onOff := func(b bool) string {
		if b {
			return Open
		}
		return Close
	}
	switch key {
	case KeyDegradeSwitch:
		return onOff(s.Degrade), true
	case KeyRateLimiterSwitch:
		return onOff(s.RateLimit), true
	case KeyPermitsPerSecond:
		return strconv.FormatFloat(s.PermitsPerSecond, 'g', -1, 64), true
	case KeyBurst:
		return strconv.Itoa(s.Burst), true
	case KeyBlacklistCount:
		return strconv.Itoa(s.BlacklistCount), true
	case KeyBlacklistDuration:
		return s.BlacklistDuration.String(), true
	case KeyDrawTimeout:
		return s.DrawTimeout.String(), true
	case KeyIPPermitsPerSecond:
		return strconv.FormatFloat(s.IPPermitsPerSecond, 'g', -1, 64), true
	case KeyIPBurst:
		return strconv.Itoa(s.IPBurst), true
	}
	return "", false
}

// Map renders every setting by key.
func (s Settings) Map() map[string]string {
	m := make(map[string]string, len(Keys))
	for _, k := range Keys {
		m[k], _ = s.Value(k)
	}
	return m
}

// Known reports whether key is a dynamic setting.
func Known(key string) bool { return slices.Contains(Keys, key) }
