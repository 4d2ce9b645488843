package nats

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

func TestSettingsBusReachesOtherNodesOnly(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, t.TempDir())
	var buses []*ArmoryBus
	var mu sync.Mutex
	heard := map[int][]int64{}
	for i := range 2 {
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		bus := NewArmoryBus(nc, "t1", nil)
		buses = append(buses, bus)
		background(t, func(ctx context.Context) error {
			return bus.ListenSettings(ctx, func(id int64) {
				mu.Lock()
				defer mu.Unlock()
				heard[i] = append(heard[i], id)
			})
		})
	}
	// The listeners subscribe asynchronously: announce until node 1 has heard one.
	testenv.Eventually(t, 30*time.Second, "node 1 hears activity 100301's settings", func() (bool, string) {
		if err := buses[0].AnnounceSettings(context.Background(), 100301); err != nil {
			return false, err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		return len(heard[1]) > 0, fmt.Sprint(heard)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(heard[0]) != 0 {
		t.Errorf("the announcing node heard its own change: %v", heard[0])
	}
	for _, id := range heard[1] {
		if id != 100301 {
			t.Errorf("node 1 heard activity %d, want 100301", id)
		}
	}
}
