package nats

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

func TestArmoryBusReachesOtherNodesOnly(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, t.TempDir())
	var buses []*ArmoryBus
	var mu sync.Mutex
	reloaded, skus := map[int][]int64{}, map[int][]int64{}
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
			}, func(sku int64) {
				mu.Lock()
				defer mu.Unlock()
				skus[i] = append(skus[i], sku)
			})
		})
	}
	// The listeners subscribe asynchronously: announce until node 1 has heard one.
	testenv.Eventually(t, 30*time.Second, "node 1 reloads strategy 100006", func() (bool, string) {
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
	mu.Unlock()
	// A SKU top-up reaches the other node's skuAdded, and no strategy reload.
	if err := buses[0].AnnounceSKUStock(context.Background(), 9011); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "node 1 hears the top-up of sku 9011", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(skus[1]) == 1 && skus[1][0] == 9011, fmt.Sprint(skus)
	})
	mu.Lock()
	if len(skus[0]) != 0 || len(reloaded[1]) == 0 || slices.Contains(reloaded[1], 0) {
		t.Errorf("after a sku top-up: skus %v, reloads %v", skus, reloaded)
	}
}
