package activity

import (
	"testing"
	"time"
)

// TestNewOrderIDs checks that a provisioning batch's order ids are distinct and of
// NewOrderID's form, so that a batch of 1,000 orders of one millisecond never collides
// with itself (random ids did, about one batch in twenty).
func TestNewOrderIDs(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_123)
	for range 20 {
		ids := newOrderIDs(now, MaxProvisionUsers)
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] || len(id) != len(NewOrderID(now)) || id[:13] != "1700000000123" {
				t.Fatalf("order id %q repeated or not of the form of %q", id, NewOrderID(now))
			}
			seen[id] = true
		}
	}
}
