package strategy_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
	"github.com/bigmarket/bigmarket/strategy"
)

// backend is one combination of SQL store and Redis the engine runs on.
type backend struct {
	db    *sqlstore.DB
	stock *redis.Stock
}

// onBackends runs fn on SQLite + embedded Redis and on MySQL + real Redis, each with the
// demo seed and a private key prefix.
func onBackends(t *testing.T, fn func(t *testing.T, b backend)) {
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		if err := sqlstore.MigrateConfig(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := sqlstore.SeedDemo(ctx, db); err != nil {
			t.Fatal(err)
		}
		var client goredis.UniversalClient
		if db.Dialect == sqlstore.SQLite {
			emb, err := redis.StartEmbedded()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(emb.Close)
			client = goredis.NewClient(&goredis.Options{Addr: emb.Addr()})
		} else {
			client = goredis.NewClient(&goredis.Options{Addr: testenv.RedisAddr(t)})
		}
		prefix := testenv.Unique("bmt")
		t.Cleanup(func() {
			iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
			for iter.Next(ctx) {
				client.Del(ctx, iter.Val())
			}
			client.Close()
		})
		fn(t, backend{db: db, stock: redis.NewStock(client, prefix)})
	})
}

func (b backend) service() *strategy.Service {
	return strategy.NewService(strategy.Options{Configs: sqlstore.NewConfigStore(b.db), Stock: b.stock})
}

func (b backend) counter(t *testing.T, strategyID int64, awardID int) int64 {
	t.Helper()
	l, err := b.stock.Remaining(context.Background(), strategy.AwardRef{StrategyID: strategyID, AwardID: awardID})
	if err != nil || !l.HasCounter {
		t.Fatalf("stock of %d/%d: %+v %v", strategyID, awardID, l, err)
	}
	return l.Counter
}

// TestSeededStrategies checks the seeded strategies on every backend: DESIGN.md's table
// sizes, the blacklist fallback taking no stock, tier picks taking stock, and rule_lock.
func TestSeededStrategies(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.service()
		for id, size := range map[int64]int64{100001: 10000, 100002: 61, 100005: 121, 100006: 9703} {
			a, err := s.Armory(ctx, id)
			if err != nil {
				t.Fatalf("armory %d: %v", id, err)
			}
			if a.Table.Size() != size {
				t.Errorf("strategy %d: table size %d, want %d", id, a.Table.Size(), size)
			}
		}
		a, _ := s.Assembled(ctx, 100006)
		if len(a.Tiers) != 3 || a.Tiers[0].Threshold != 10 || a.Tiers[0].Table().Size() != 6 {
			t.Errorf("100006 tiers: %+v", a.Tiers)
		}
		if got := a.Table.Slots()[108]; got != 3 {
			t.Errorf("award 108 (0.0003) has %d slots, want 3", got)
		}

		t.Run("blacklist takes no stock", func(t *testing.T) {
			before := map[int]int64{}
			for id := 101; id <= 108; id++ {
				before[id] = b.counter(t, 100006, id)
			}
			for range 30 {
				r, err := s.Draw(ctx, strategy.Input{UserID: "user003", StrategyID: 100006, Score: 100})
				if err != nil || r.AwardID != 101 || r.Rule != strategy.RuleBlacklist {
					t.Fatalf("user003: %+v %v", r, err)
				}
			}
			for id := 101; id <= 108; id++ {
				if after := b.counter(t, 100006, id); after != before[id] {
					t.Errorf("award %d stock moved from %d to %d on blacklist draws", id, before[id], after)
				}
			}
		})

		t.Run("tier picks take stock", func(t *testing.T) {
			// Tier 70 of 100006 is awards 106 (stock 22) and 107 (stock 21), behind
			// tree_lock_2 and tree_lock_1: with 5 draws today both are unlocked.
			b106, b107 := b.counter(t, 100006, 106), b.counter(t, 100006, 107)
			got := map[int]int64{}
			for range 60 {
				r, err := s.Draw(ctx, strategy.Input{UserID: "u1", StrategyID: 100006, Score: 70, DrawsToday: 5})
				if err != nil {
					t.Fatal(err)
				}
				if r.AwardID != 106 && r.AwardID != 107 && r.AwardID != 101 {
					t.Fatalf("score 70 drew award %d outside its tier", r.AwardID)
				}
				got[r.AwardID]++
			}
			if got[106] != b106-b.counter(t, 100006, 106) || got[107] != b107-b.counter(t, 100006, 107) {
				t.Errorf("granted %v but stock moved 106: %d→%d, 107: %d→%d", got, b106, b.counter(t, 100006, 106), b107, b.counter(t, 100006, 107))
			}
			if got[106] > b106 || got[107] > b107 || got[106]+got[107] == 0 {
				t.Errorf("granted %v with stock 106=%d 107=%d", got, b106, b107)
			}
		})

		t.Run("rule_lock", func(t *testing.T) {
			// Tier 1000 of 100006 is 104 (no tree) and 105 (tree_lock_3).
			for _, today := range []int64{0, 2} {
				for range 40 {
					r, err := s.Draw(ctx, strategy.Input{UserID: "u2", StrategyID: 100006, Score: 1000, DrawsToday: today})
					if err != nil {
						t.Fatal(err)
					}
					if r.AwardID == 105 {
						t.Fatalf("award 105 granted with %d draws today; it unlocks at 3", today)
					}
				}
			}
			got105 := false
			for range 40 {
				r, err := s.Draw(ctx, strategy.Input{UserID: "u2", StrategyID: 100006, Score: 1000, DrawsToday: 3})
				if err != nil {
					t.Fatal(err)
				}
				got105 = got105 || r.AwardID == 105
			}
			if !got105 {
				t.Error("award 105 never granted after 3 draws today")
			}
		})
	})
}

// TestStaleSeedSurplusIsNotReapplied re-runs the armory after draws: the stock already in
// Redis must be kept, not reset to the SQL surplus.
func TestStaleSeedSurplusIsNotReapplied(t *testing.T) {
	t.Parallel()
	onBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.service()
		if _, err := s.Armory(ctx, 100004); err != nil {
			t.Fatal(err)
		}
		r, err := s.Draw(ctx, strategy.Input{UserID: "system", StrategyID: 100004})
		if err != nil || r.AwardID != 109 {
			t.Fatalf("first draw on 100004: %+v %v", r, err)
		}
		if _, err := b.service().Armory(ctx, 100004); err != nil { // another node's armory
			t.Fatal(err)
		}
		for i := range 5 {
			r, err := s.Draw(ctx, strategy.Input{UserID: "system", StrategyID: 100004})
			if err != nil || r.AwardID == 109 {
				t.Fatalf("draw %d after re-armory: %+v %v; award 109 had stock 1", i, r, err)
			}
		}
	})
}
