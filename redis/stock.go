package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/strategy"
)

// maxStock bounds a preheated counter so that every value stays exact in Lua, whose
// numbers are doubles.
const maxStock = 1 << 53

// Stock is the hot award stock in Redis; it implements strategy.Stock.
//
// An award is a counter (counter.go) on keys sharing one Cluster hash tag:
//
//	<prefix>:award_stock:{<strategyID>_<awardID>}         the units left
//	<prefix>:award_stock:{<strategyID>_<awardID>}:issued  the units granted so far
//	<prefix>:award_stock:{<strategyID>_<awardID>}:total   the award's count
type Stock struct {
	client goredis.UniversalClient
	// deducts runs Deduct, the draw's one stock round trip: client, or an auto-pipeliner
	// (DeductVia) so that concurrent draws share round trips.
	deducts goredis.Scripter
	prefix  string
	fence   bool
	wait    ReplicaWait
}

var _ strategy.Stock = (*Stock)(nil)

// NewStock returns a Stock on client whose keys start with prefix (which must not
// contain braces, or every award would hash to the prefix's slot). An empty prefix is
// allowed.
func NewStock(client goredis.UniversalClient, prefix string) *Stock {
	if prefix != "" {
		prefix += ":"
	}
	return &Stock{client: client, deducts: client, prefix: prefix}
}

// DeductVia makes Deduct run its script through c (an auto-pipeliner of the same Redis),
// so that the deductions of concurrent draws share round trips; everything else still
// goes through the client NewStock was given.
func (s *Stock) DeductVia(c goredis.Scripter) { s.deducts = c }

// Fence turns replication-id fencing of the writing scripts (deduct, top-up, preheat) on
// or off (see counter.go and fence.go): on with an external Redis, whose failover can roll
// a counter back to a whole state that lacks answered grants; off with the embedded
// server. A fenced deduction wraps strategy.ErrStockMissing, so the award is rebuilt from
// the durable records as a lost one. The reads are not fenced. It returns s.
func (s *Stock) Fence(on bool) *Stock {
	s.fence = on
	return s
}

// WaitReplicas makes each deduction wait for w.Replicas replicas to acknowledge it (see
// ReplicaWait), through w.Client rather than the auto-pipeliner of DeductVia. One they did
// not acknowledge wraps strategy.ErrStockMissing and ErrUnreplicated: the draw answers
// retry and grants nothing. Top-up and preheat do not wait: they grant nothing, and a
// counter they wrote on a cut-off master is rebuilt from SQL on the promoted replica
// (fenced). It returns s.
func (s *Stock) WaitReplicas(w ReplicaWait) *Stock {
	s.wait = w
	return s
}

// CounterKey returns the key of ref's counter.
func (s *Stock) CounterKey(ref strategy.AwardRef) string {
	return s.prefix + "award_stock:{" + strconv.FormatInt(ref.StrategyID, 10) + "_" +
		strconv.Itoa(ref.AwardID) + "}"
}

// LowKey returns the key of ref's low watermark in the old form (see counter.go).
func (s *Stock) LowKey(ref strategy.AwardRef) string { return s.CounterKey(ref) + ":low" }

// IssuedKey returns the key of the units of ref granted so far.
func (s *Stock) IssuedKey(ref strategy.AwardRef) string { return s.CounterKey(ref) + ":issued" }

// TotalKey returns the key of ref's count.
func (s *Stock) TotalKey(ref strategy.AwardRef) string { return s.CounterKey(ref) + ":total" }

// Exists reports whether ref's counter is in Redis in the current form.
func (s *Stock) Exists(ctx context.Context, ref strategy.AwardRef) (bool, error) {
	ok, err := counterExists(ctx, s.client, s.CounterKey(ref))
	if err != nil {
		return false, fmt.Errorf("read stock of award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return ok, nil
}

// Preheat creates ref's counter with total units of which remaining are left, with the
// given expiry, unless it exists; what survives of an earlier counter can only lower it.
func (s *Stock) Preheat(ctx context.Context, ref strategy.AwardRef, total, remaining int64, expireAt time.Time) error {
	if err := preheatCounter(ctx, s.client, s.fence, s.CounterKey(ref), total, remaining, expireAt); err != nil {
		return fmt.Errorf("preheat award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return nil
}

// Deduct takes one unit of ref's stock in one Lua round trip. All keys get expireAt. It
// returns an error wrapping strategy.ErrStockOut when none is left and
// strategy.ErrStockMissing when the counter is absent, in the old form or fenced (then
// wrapping ErrFenced too). A sequence
// number once returned is never returned again for ref, even if the counter is later set
// back up or topped up.
func (s *Stock) Deduct(ctx context.Context, ref strategy.AwardRef, expireAt time.Time) (strategy.Grant, error) {
	n, issued, err := deductCounter(ctx, s.deducts, s.fence, s.wait, s.CounterKey(ref), 1, expireAt, strategy.ErrStockOut, strategy.ErrStockMissing)
	if err != nil {
		return strategy.Grant{}, fmt.Errorf("deduct award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return strategy.Grant{Remaining: n, Issued: issued}, nil
}

// TopUp raises ref's count in Redis to total (the award's new award_count) and its units
// left with it. It reports false when the counter is absent or in the old form: the
// rebuild then reads the new count from SQL.
func (s *Stock) TopUp(ctx context.Context, ref strategy.AwardRef, total int64, expireAt time.Time) (bool, error) {
	ok, err := topUpCounter(ctx, s.client, s.fence, s.CounterKey(ref), total, expireAt)
	if err != nil {
		return false, fmt.Errorf("top up award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return ok, nil
}

// Remaining reads ref's keys in one round trip. Absent keys are reported in the Level,
// not as errors.
func (s *Stock) Remaining(ctx context.Context, ref strategy.AwardRef) (Level, error) {
	l, err := readLevel(ctx, s.client, s.CounterKey(ref))
	if err != nil {
		return Level{}, fmt.Errorf("read stock of award %d of strategy %d: %w", ref.AwardID, ref.StrategyID, err)
	}
	return l, nil
}

// Issued reads ref's high watermark of grants (strategy.IssuedLevels, for the stock
// reconcile job); false when the counter holds none.
func (s *Stock) Issued(ctx context.Context, ref strategy.AwardRef) (int64, bool, error) {
	l, err := s.Remaining(ctx, ref)
	return l.Issued, l.HasIssued, err
}

var _ strategy.StockLevels = (*Stock)(nil)

// States reads the counters of refs in one pipelined round trip (each counter is one
// slot): an award is out when its counter has no unit left to grant (remaining at most 0,
// or every unit of its total issued), missing when any of its keys is absent.
func (s *Stock) States(ctx context.Context, refs []strategy.AwardRef) ([]strategy.StockState, error) {
	cmds := make([]*goredis.SliceCmd, len(refs))
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, ref := range refs {
			cmds[i] = p.MGet(ctx, counterKeys(s.CounterKey(ref))...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stock states: %w", err)
	}
	out := make([]strategy.StockState, len(refs))
	for i, cmd := range cmds {
		var level [3]int64
		for j, v := range cmd.Val() {
			n, ok, err := parseLevel(v)
			if err != nil {
				return nil, fmt.Errorf("read stock of award %d of strategy %d: %w", refs[i].AwardID, refs[i].StrategyID, err)
			}
			if !ok {
				out[i] = strategy.StockMissing
				break
			}
			level[j] = n
		}
		if out[i] == strategy.StockMissing {
			continue
		}
		if remaining, issued, total := level[0], level[1], level[2]; remaining <= 0 || issued >= total {
			out[i] = strategy.StockOut
		}
	}
	return out, nil
}
