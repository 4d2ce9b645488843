package nats

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestArmoryBusReachesOtherNodesOnly(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, t.TempDir())
	var buses []*ArmoryBus
	var mu sync.Mutex
	reloaded := map[int][]int64{}
	for i := range 2 {
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		bus := NewArmoryBus(nc, "t1", nil)
		buses = append(buses, bus)
		background(t, func(ctx context.Context) error {
			return bus.Listen(ctx, func(_ context.Context, id int64) error {
				mu.Lock()
				defer mu.Unlock()
				reloaded[i] = append(reloaded[i], id)
				return nil
			})
		})
	}
	// The listeners subscribe asynchronously: announce until node 1 has heard one.
	eventually(t, "node 1 reloads strategy 100006", func() (bool, string) {
		if err := buses[0].AnnounceArmory(context.Background(), 100006); err != nil {
			return false, err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		return len(reloaded[1]) > 0, fmt.Sprint(reloaded)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reloaded[0]) != 0 {
		t.Errorf("the announcing node reloaded its own armory: %v", reloaded[0])
	}
	for _, id := range reloaded[1] {
		if id != 100006 {
			t.Errorf("node 1 reloaded strategy %d, want 100006", id)
		}
	}
}
