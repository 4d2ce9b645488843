package redis

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// roundTrips counts a client's round trips to Redis (a pipeline is one).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() != "cluster" { // the cluster client's slot map
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestAdmitSoldOutCheckIsLocal: the gate's sold-out check of an activity without fallback
// does not read Redis per draw. A node asks once per StockedTTL while the strategy has
// stock, answers a sold-out strategy from its own flags, and never answers ERR_BIZ_010
// after a top-up beyond the bound it states: at once on a node that hears the top-up's
// announcement (Reload), within the sold-out flags' TTL on one that missed it.
func TestAdmitSoldOutCheckIsLocal(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			trips := &roundTrips{}
			client.AddHook(trips)
			ctx := context.Background()
			clock := testenv.NewClock(time.Now())
			stock := newTestStock(t, client)
			const soldOutTTL = 5 * time.Second
			node := func() (*gate.Gate, *strategy.Service) {
				strategies := strategy.NewService(strategy.Options{Configs: twoAwards{}, Stock: stock,
					ImplicitLuckAward: strategy.NoFallback, SoldOutTTL: soldOutTTL, Now: clock.Now})
				g := gate.New(gate.Options{Store: plainSettings{}, Activities: openActivity{}, Strategies: strategies,
					StockedTTL: time.Second, Now: clock.Now})
				return g, strategies
			}
			a, aStrategies := node()
			other, _ := node()
			admit := func(g *gate.Gate, draws int) (admitted, soldOut int) {
				t.Helper()
				var mu sync.Mutex
				var wg sync.WaitGroup
				for range draws {
					wg.Go(func() {
						p, err := g.Admit(ctx, "alice", 7, time.Second)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							admitted++
							p.Close()
						case errors.Is(err, strategy.ErrSoldOut):
							soldOut++
						default:
							t.Errorf("admit: %v", err)
						}
					})
				}
				wg.Wait()
				return admitted, soldOut
			}
			// Each node asks once, then admits from memory until StockedTTL passes.
			for _, g := range []*gate.Gate{a, other} {
				if n, _ := admit(g, 1); n != 1 {
					t.Fatal("first draw not admitted")
				}
			}
			before := trips.n.Load()
			for range 200 { // one after another: no question shared
				if n, _ := admit(a, 1); n != 1 {
					t.Fatal("draw not admitted")
				}
			}
			if got := trips.n.Load() - before; got != 0 {
				t.Errorf("200 admits within StockedTTL made %d Redis round trips, want 0", got)
			}
			clock.Advance(time.Second)
			before = trips.n.Load()
			admit(a, 200)
			if got := trips.n.Load() - before; got < 1 || got > 10 {
				t.Errorf("200 admits after StockedTTL made %d Redis round trips, want the check once (a few when concurrent)", got)
			}

			// Sold out: every unit granted elsewhere.
			for _, id := range []int{101, 102} {
				for {
					if _, err := stock.Deduct(ctx, strategy.AwardRef{StrategyID: 10, AwardID: id}, clock.Now().Add(time.Hour)); err != nil {
						break
					}
				}
			}
			clock.Advance(time.Second)
			for _, g := range []*gate.Gate{a, other} {
				if _, out := admit(g, 1); out != 1 {
					t.Fatal("sold-out activity admitted after StockedTTL")
				}
			}
			before = trips.n.Load()
			for range 3 {
				clock.Advance(time.Second)
				if n, out := admit(a, 50); n != 0 || out != 50 {
					t.Errorf("sold out: %d admitted, %d refused; want all 50 refused", n, out)
				}
			}
			if got := trips.n.Load() - before; got != 0 {
				t.Errorf("150 refusals of a sold-out activity made %d Redis round trips, want 0 (its flags)", got)
			}

			// A top-up: node a hears its announcement, node b misses it.
			if ok, err := stock.TopUp(ctx, strategy.AwardRef{StrategyID: 10, AwardID: 102}, 11, clock.Now().Add(time.Hour)); err != nil || !ok {
				t.Fatalf("top-up: %v %v", ok, err)
			}
			if err := aStrategies.Reload(ctx, 10); err != nil {
				t.Fatal(err)
			}
			if n, _ := admit(a, 1); n != 1 {
				t.Error("node that heard the top-up still refuses")
			}
			clock.Advance(soldOutTTL)
			if n, _ := admit(other, 1); n != 1 {
				t.Errorf("node that missed the top-up refuses %s after it, beyond the flags' TTL", soldOutTTL)
			}
		})
	}
}

// plainSettings gives every activity the default settings.
type plainSettings struct{}

func (plainSettings) ActivitySettings(_ context.Context, id int64) (gate.Settings, bool, error) {
	return gate.Settings{ActivityID: id}, true, nil
}
func (plainSettings) SaveActivitySettings(context.Context, gate.Settings) error { return nil }
