package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// TestRedPacketGrabTwoProcesses: 10,000 users grab a 1,000-item operator packet through
// two serve processes at once. Exactly 1,000 succeed, their amounts sum to the total,
// nobody gets two items, a winner's second grab answers 0003 with the same amount, and
// once the consumers drain every grab is credited exactly once.
func TestRedPacketGrabTwoProcesses(t *testing.T) {
	d := newDeployment(t, "")
	_, a := d.start(t)
	_, b := d.start(t)
	admin := "Bearer " + d.adminToken
	r := call(t, "POST", a+"/api/v1/admin/redpacket/send", `{"totalAmount":"5000.00","count":1000,"mode":"random","greeting":"开工大吉","expireMinutes":30}`, "Authorization: "+admin)
	sent, err := dataOf[struct {
		PacketID string `json:"packetId"`
	}](r)
	if err != nil || r.Code != "0000" || sent.PacketID == "" {
		t.Fatalf("operator send: %+v %v", r, err)
	}
	type grabbed struct {
		PacketID string      `json:"packetId"`
		Amount   money.Cents `json:"amount"`
	}
	grab := func(base, user string) (envelope, grabbed) {
		r := call(t, "POST", base+"/api/v1/redpacket/grab", fmt.Sprintf(`{"userId":%q,"packetId":%q}`, user, sent.PacketID))
		var g grabbed
		if r.Code == "0000" || r.Code == "0003" {
			var err error
			if g, err = dataOf[grabbed](r); err != nil || g.PacketID != sent.PacketID {
				t.Errorf("grab of %s: %+v %v", user, r, err)
			}
		}
		return r, g
	}
	prefix := testenv.Unique("g")
	var (
		mu    sync.Mutex
		codes = map[string]int{}
		won   = map[string]money.Cents{}
	)
	start := time.Now()
	fanOut(10_000, 64, func(i int) {
		user := fmt.Sprintf("%s-%d", prefix, i)
		r, g := grab([]string{a, b}[i%2], user)
		mu.Lock()
		defer mu.Unlock()
		codes[r.Code]++
		if r.Code == "0000" {
			won[user] = g.Amount
		}
	})
	t.Logf("10,000 grabs through two processes in %s: %v", time.Since(start).Round(time.Millisecond), codes)
	if codes["0000"] != 1000 || codes["ERR_RP_001"] != 9000 || len(won) != 1000 {
		t.Fatalf("codes %v, winners %d: want exactly 1,000 successes and 9,000 ERR_RP_001", codes, len(won))
	}
	var sum money.Cents
	for _, c := range won {
		if c < 1 {
			t.Fatalf("an item below 0.01: %s", c)
		}
		sum += c
	}
	if sum != 5000_00 {
		t.Fatalf("grabbed amounts sum to %s, want 5000.00", sum)
	}
	n := 0
	for user, c := range won { // a winner's retry, on the other process, is the same grab
		if r, g := grab(b, user); r.Code != "0003" || g.Amount != c {
			t.Fatalf("second grab of %s: %+v %+v, want 0003 with %s", user, r, g, c)
		}
		if n++; n == 20 {
			break
		}
	}
	testenv.Eventually(t, 2*time.Minute, "every grab credited", func() bool {
		for user, c := range won {
			acc, err := d.users.CreditAccount(t.Context(), user)
			if err != nil {
				t.Fatal(err)
			}
			if acc.Total != c {
				return false
			}
		}
		return true
	})
	// Every item names its winner with the amount the winner was told.
	testenv.Eventually(t, time.Minute, "every item recorded", func() bool {
		_, items, err := d.users.RedPacket(t.Context(), sent.PacketID)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.UserID == "" {
				return false
			}
			if won[it.UserID] != it.Amount {
				t.Fatalf("item %d is %s's of %s, but %s was told %s", it.Index, it.UserID, it.Amount, it.UserID, won[it.UserID])
			}
		}
		return len(items) == 1000
	})
	// The detail page: all grabbed, the luckiest is the largest amount.
	r = call(t, "GET", b+"/api/v1/redpacket/detail?packetId="+sent.PacketID, nil)
	detail, err := dataOf[struct {
		TotalAmount     money.Cents `json:"totalAmount"`
		GrabbedCount    int         `json:"grabbedCount"`
		GrabbedAmount   money.Cents `json:"grabbedAmount"`
		RemainingCount  int         `json:"remainingCount"`
		RemainingAmount money.Cents `json:"remainingAmount"`
		State           string      `json:"state"`
		Grabs           []struct {
			UserID   string      `json:"userId"`
			Amount   money.Cents `json:"amount"`
			GrabTime *int64      `json:"grabTime"`
		} `json:"grabs"`
		Luckiest *struct {
			UserID string      `json:"userId"`
			Amount money.Cents `json:"amount"`
		} `json:"luckiest"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("detail: %+v %v", r, err)
	}
	var best money.Cents
	for _, c := range won {
		best = max(best, c)
	}
	if detail.GrabbedCount != 1000 || detail.GrabbedAmount != 5000_00 || detail.RemainingCount != 0 || detail.RemainingAmount != 0 ||
		detail.State != "open" || len(detail.Grabs) != 1000 || detail.Luckiest == nil || detail.Luckiest.Amount != best ||
		won[detail.Luckiest.UserID] != best || detail.Grabs[0].GrabTime == nil {
		t.Fatalf("detail: %d grabbed of %s, %d left, state %s, luckiest %+v (best %s)", detail.GrabbedCount, detail.GrabbedAmount,
			detail.RemainingCount, detail.State, detail.Luckiest, best)
	}
	if r := call(t, "GET", a+"/api/v1/redpacket/detail?packetId=0099", nil); r.Code != "0002" {
		t.Fatalf("detail of an unknown packet: %+v", r)
	}
	// An operator packet for named users only.
	r = call(t, "POST", a+"/api/v1/admin/redpacket/send", `{"totalAmount":"2.00","count":2,"mode":"fixed","eligibleUsers":["vip-1","vip-2"]}`, "Authorization: "+admin)
	vip, err := dataOf[struct {
		PacketID string `json:"packetId"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("operator send to eligible users: %+v %v", r, err)
	}
	for user, code := range map[string]string{"vip-1": "0000", "someone": "ERR_RP_003"} {
		if r := call(t, "POST", b+"/api/v1/redpacket/grab", fmt.Sprintf(`{"userId":%q,"packetId":%q}`, user, vip.PacketID)); r.Code != code {
			t.Fatalf("grab of the eligible-only packet by %s: %+v, want %s", user, r, code)
		}
	}
	// Credited exactly once: each winner's balance is the amount once (a second credit
	// would double it); no loser holds credit.
	for i := range 50 {
		user := fmt.Sprintf("%s-%d", prefix, i)
		if _, ok := won[user]; ok {
			continue
		}
		if acc, err := d.users.CreditAccount(t.Context(), user); err != nil || acc.Total != 0 {
			t.Fatalf("loser %s has credit %+v %v", user, acc, err)
		}
	}
}
