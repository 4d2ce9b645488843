package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/internal/tick"
	"github.com/bigmarket/bigmarket/redpacket"
)

// TestStrategyChangeReachesNodesWithoutArmory: two serve processes assemble a strategy;
// an award is then added to it in SQL with no armory call, so no announcement is sent —
// what a node that missed the armory bus sees. Each node's strategy refresh (every second
// here) finds the stored config changed and re-assembles it: both draw the new award.
func TestStrategyChangeReachesNodesWithoutArmory(t *testing.T) {
	d := newDeployment(t, "")
	var bases []string
	for range 2 {
		_, base := d.start(t, "BIGMARKET_STRATEGY_REFRESH_EVERY=1s")
		bases = append(bases, base)
	}
	for _, base := range bases {
		strategyArmory(t, d, base)
	}
	const newAward = 110
	if got := randomRaffles(t, d, bases, 10); got[newAward] != 0 {
		t.Fatalf("award %d drawn before it was added: %v", newAward, got)
	}
	// Rate 1 against the seeded 0.9703 in all: about every other draw gives it.
	if _, err := d.db.SQL.Exec(`INSERT INTO strategy_award (strategy_id, award_id, award_title, award_subtitle,
		award_count, award_count_surplus, award_rate, rule_models, sort) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		faultStrategy, newAward, "added without an armory", "", 1000, 1000, "1.0000", "", 9); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, base := range bases {
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("node %d draws the award added without an armory", i), func() bool {
			return randomRaffles(t, d, []string{base}, 10)[newAward] > 0
		})
	}
	t.Logf("both nodes drew the new award %s after it was stored", time.Since(start).Round(time.Millisecond))
}

// TestRedPacketSweepAfterItsHolderDied: a node died right after claiming the red packet
// sweep's lease (the test writes that claim into Redis). The live serve process leaves
// the expired packet alone while the claim lasts, and refunds it once the claim lapses:
// interval + 15s after it was made (interval is 1s here).
func TestRedPacketSweepAfterItsHolderDied(t *testing.T) {
	d := newDeployment(t, "")
	const every = time.Second
	_, base := d.start(t, "BIGMARKET_RED_PACKET_SWEEP_EVERY="+every.String())
	r := call(t, "POST", base+"/api/v1/admin/redpacket/send", `{"totalAmount":"10.00","count":5,"mode":"fixed","greeting":"lease","expireMinutes":30}`,
		"Authorization: Bearer "+d.adminToken)
	sent, err := dataOf[struct {
		PacketID string `json:"packetId"`
	}](r)
	if err != nil || r.Code != "0000" || sent.PacketID == "" {
		t.Fatalf("operator send: %+v %v", r, err)
	}
	if r := call(t, "POST", base+"/api/v1/redpacket/grab", fmt.Sprintf(`{"userId":"lease-grabber","packetId":%q}`, sent.PacketID)); r.Code != "0000" {
		t.Fatalf("grab: %+v", r)
	}

	// The dead node's claim, as redis.Leases writes it, for the TTL the sweep claims with.
	key := d.prefix + ":lease:{red_packet_sweep}"
	ttl := tick.LeaseTTL(every)
	var claimed time.Time
	testenv.Eventually(t, 30*time.Second, "the dead node's claim written while no sweep holds the lease", func() bool {
		ok, err := d.redis.SetNX(t.Context(), key, "dead-node", ttl).Result()
		if err != nil {
			t.Fatal(err)
		}
		claimed = time.Now()
		return ok
	})
	// Now the packet expires (its expiry moved into the past in its database).
	moved := int64(0)
	for _, db := range d.userDBs {
		res, err := db.SQL.Exec(`UPDATE red_packet SET expire_time = ? WHERE packet_id = ?`, time.Now().UTC().Add(-time.Minute), sent.PacketID)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := res.RowsAffected()
		moved += n
	}
	if moved != 1 {
		t.Fatalf("moved the expiry of %d packets, want 1", moved)
	}
	state := func() string {
		p, _, err := d.users.RedPacket(t.Context(), sent.PacketID)
		if err != nil {
			t.Fatal(err)
		}
		return string(p.State)
	}
	testenv.Eventually(t, ttl+time.Minute, "the packet swept once the dead node's claim lapsed", func() bool {
		s := state() // before the claim is read: a sweep seen here ran before that read
		held, err := d.redis.Exists(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if s != string(redpacket.StateOpen) && held == 1 {
			if v, _ := d.redis.Get(t.Context(), key).Result(); v == "dead-node" {
				t.Fatalf("the packet was swept (%s) while the dead node's claim still held the lease", s)
			}
		}
		return s != string(redpacket.StateOpen)
	})
	after := time.Since(claimed)
	t.Logf("swept %s after the dead node's claim (lease %s, sweep every %s)", after.Round(time.Millisecond), ttl, every)
	r = call(t, "GET", base+"/api/v1/redpacket/detail?packetId="+sent.PacketID, nil)
	if r.Code != "0000" || !strings.Contains(string(r.Data), `"grabbedCount":1`) {
		t.Fatalf("detail after the sweep: %+v", r)
	}
}
