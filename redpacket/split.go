// Package redpacket is credit red packets: sending splits a total into items, grabbing takes one item per user, and every grab is credited exactly once.
package redpacket

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/bigmarket/bigmarket/money"
)

// Mode is how a packet's total is split.
type Mode string

const (
	// ModeRandom splits by the double-mean rule: amounts vary, every grabber's position is
	// equally lucky.
	ModeRandom Mode = "random"
	// ModeFixed gives every item the same amount.
	ModeFixed Mode = "fixed"
)

// Valid reports whether m is a mode Split knows.
func (m Mode) Valid() bool { return m == ModeRandom || m == ModeFixed }

// ErrInvalid is a red packet request that cannot be served as asked (bad count, amount, mode…); callers map it to 0002.
var ErrInvalid = errors.New("invalid red packet")

// Split divides total into count items, in integer cents, with rng as the only randomness.
// The items sum to exactly total and each is at least one cent.
//
// In random mode each item but the last is drawn uniformly from 1 to twice the mean of
// what is left (capped so that every later item can still get a cent), the last takes the
// rest, and the items are then shuffled: the draw order favours late items (they have the
// widest spread), and the shuffle gives every position the same distribution, so no
// grabbing order is luckier than another. rng must not be nil in random mode; fixed mode
// does not use it.
//
// Split allocates count items; callers bound count before calling it.
func Split(total money.Cents, count int, mode Mode, rng *rand.Rand) ([]money.Cents, error) {
	if !mode.Valid() {
		return nil, fmt.Errorf("unknown split mode %q: %w", mode, ErrInvalid)
	}
	if count < 1 {
		return nil, fmt.Errorf("count %d is below 1: %w", count, ErrInvalid)
	}
	n := money.Cents(count)
	if total < n {
		return nil, fmt.Errorf("total %s is less than 0.01 for each of %d items: %w", total, count, ErrInvalid)
	}
	items := make([]money.Cents, count)
	if mode == ModeFixed {
		if total%n != 0 {
			return nil, fmt.Errorf("total %s does not split into %d equal items of whole cents: %w", total, count, ErrInvalid)
		}
		for i := range items {
			items[i] = total / n
		}
		return items, nil
	}
	remaining := total
	for i := range count - 1 {
		left := money.Cents(count - i)
		// remaining >= left holds here, so hi >= 1. 2·remaining/left is computed as
		// 2·(remaining/left) + 2·(remaining%left)/left, which cannot overflow int64.
		hi := 2*(remaining/left) + 2*(remaining%left)/left
		hi = min(hi, remaining-(left-1))
		items[i] = 1 + money.Cents(rng.Int64N(int64(hi)))
		remaining -= items[i]
	}
	items[count-1] = remaining
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	return items, nil
}
