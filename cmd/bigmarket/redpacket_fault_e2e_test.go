package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// grabReply is a grab's code and, for 0000 and 0003, the amount it was told.
type grabReply struct {
	code   string
	amount money.Cents
}

// grabOnce sends one grab; it may run on any goroutine.
func grabOnce(t *testing.T, base, user, packetID string) grabReply {
	r := call(t, "POST", base+"/api/v1/redpacket/grab", []byte(fmt.Sprintf(`{"userId":%q,"packetId":%q}`, user, packetID)))
	g := grabReply{code: r.Code}
	if r.Code == "0000" || r.Code == "0003" {
		d, err := dataOf[struct {
			PacketID string      `json:"packetId"`
			Amount   money.Cents `json:"amount"`
		}](r)
		if err != nil || d.PacketID != packetID {
			t.Errorf("grab of %s: %+v %v", user, r, err)
		}
		g.amount = d.Amount
	}
	return g
}

// grabUntilFinal grabs until the answer is final (not a retryable ERR_RP_004, 0009 or 0001).
func grabUntilFinal(t *testing.T, base, user, packetID string) grabReply {
	deadline := time.Now().Add(60 * time.Second)
	for {
		g := grabOnce(t, base, user, packetID)
		if (g.code != "ERR_RP_004" && g.code != "0009" && g.code != "0001") || time.Now().After(deadline) {
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sendPacket sends a packet through base: a user's when sender is set (the sender's
// credit pays for it), else an operator campaign.
func (d *deployment) sendPacket(t *testing.T, base, sender, total string, count int) string {
	t.Helper()
	body := fmt.Sprintf(`{"totalAmount":%q,"count":%d,"mode":"random","expireMinutes":30}`, total, count)
	path, auth := "/api/v1/admin/redpacket/send", "Bearer "+d.adminToken
	if sender != "" {
		body = fmt.Sprintf(`{"userId":%q,"totalAmount":%q,"count":%d,"mode":"random","expireMinutes":30}`, sender, total, count)
		path, auth = "/api/v1/redpacket/send", ""
	}
	r := call(t, "POST", base+path, body, "Authorization: "+auth)
	sent, err := dataOf[struct {
		PacketID string `json:"packetId"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("send: %+v %v", r, err)
	}
	return sent.PacketID
}

// topUp gives the user credit, as a rebate would.
func (d *deployment) topUp(t *testing.T, user string, amount money.Cents) {
	t.Helper()
	order := &credit.Order{UserID: user, OrderID: "topup-" + user, Name: credit.NameRebate, Type: credit.Forward, Amount: amount, OutBusinessNo: "topup-" + user}
	if errs := d.users.ApplyCredit(t.Context(), []credit.Change{{UserID: user, Order: order}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// expireNow moves a packet's expiry into the past in SQL and in Redis, as if its time had
// come: the processes keep their own clocks, so the test moves the data instead.
func (d *deployment) expireNow(t *testing.T, rdb goredis.UniversalClient, packetID string) {
	t.Helper()
	past := time.Now().Add(-time.Second)
	dbi, _ := strconv.Atoi(packetID[:2])
	if _, err := d.userDBs[dbi].SQL.ExecContext(t.Context(), "UPDATE red_packet SET expire_time = ? WHERE packet_id = ?", past.UTC(), packetID); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(t.Context(), d.prefix+":rp:{"+packetID+"}:meta", "expire_ms", past.UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
}

// settled waits until the packet is no longer open and every item its grabbers were told
// of is recorded and credited once, then checks that grabbed + refunded = total, and
// returns the packet and its items.
func (d *deployment) settled(t *testing.T, packetID string, told map[string]money.Cents) (redpacket.Packet, []redpacket.Item) {
	t.Helper()
	var (
		p     redpacket.Packet
		items []redpacket.Item
	)
	testenv.Eventually(t, 2*time.Minute, "packet "+packetID+" refunded and every grab credited", func() bool {
		var err error
		if p, items, err = d.users.RedPacket(t.Context(), packetID); err != nil {
			t.Fatal(err)
		}
		if p.State == redpacket.StateOpen {
			return false
		}
		for user, amount := range told {
			acc, err := d.users.CreditAccount(t.Context(), user)
			if err != nil {
				t.Fatal(err)
			}
			if acc.Total != amount {
				return false
			}
		}
		return true
	})
	var grabbed money.Cents
	holders := map[string]bool{}
	for _, it := range items {
		if it.UserID == "" {
			continue
		}
		if holders[it.UserID] {
			t.Fatalf("%s holds two items of packet %s", it.UserID, packetID)
		}
		holders[it.UserID] = true
		grabbed += it.Amount
		if amount, ok := told[it.UserID]; ok && amount != it.Amount {
			t.Fatalf("%s was told %s but holds item %d of %s", it.UserID, amount, it.Index, it.Amount)
		}
	}
	for user := range told {
		if !holders[user] {
			t.Fatalf("%s was told of a grab that holds no item", user)
		}
	}
	if grabbed+p.Refund != p.Total {
		t.Fatalf("packet %s: grabbed %s + refunded %s ≠ total %s", packetID, grabbed, p.Refund, p.Total)
	}
	return p, items
}

// TestRedPacketExpiryRefundsTheRemainderOnce: grabs race a packet's expiry; the sweep of
// two processes refunds total − grabbed to the sender exactly once, and every grab made
// before the close is credited.
func TestRedPacketExpiryRefundsTheRemainderOnce(t *testing.T) {
	d := newDeployment(t, "")
	env := []string{"BIGMARKET_RED_PACKET_SWEEP_EVERY=300ms"}
	_, a := d.start(t, env...)
	_, b := d.start(t, env...)
	sender := testenv.Unique("sender")
	d.topUp(t, sender, 100_00)
	packetID := d.sendPacket(t, a, sender, "50.00", 300)
	if acc, _ := d.users.CreditAccount(t.Context(), sender); acc.Available != 50_00 {
		t.Fatalf("sender after sending 50.00 of 100.00: %+v", acc)
	}

	var (
		mu   sync.Mutex
		told = map[string]money.Cents{}
		late int
	)
	prefix := testenv.Unique("rx")
	grab := func(i int) {
		user := fmt.Sprintf("%s-%d", prefix, i)
		g := grabOnce(t, []string{a, b}[i%2], user, packetID)
		mu.Lock()
		defer mu.Unlock()
		switch g.code {
		case "0000":
			told[user] = g.amount
		case "ERR_RP_002":
			late++
		default:
			t.Errorf("grab %d: %+v", i, g)
		}
	}
	fanOut(40, 8, grab)
	// 200 more grabs race the expiry (they cannot empty the 300 items).
	fanOut(201, 16, func(i int) {
		if i == 0 {
			d.expireNow(t, d.redis, packetID)
			return
		}
		grab(40 + i)
	})
	if len(told) < 40 || late == 0 {
		t.Fatalf("%d grabs before the expiry and %d after: the race did not happen", len(told), late)
	}
	p, _ := d.settled(t, packetID, told)
	if p.State != redpacket.StateRefunded || p.Refund <= 0 {
		t.Fatalf("packet after expiry: %+v", p)
	}
	time.Sleep(time.Second) // several more sweeps of both processes
	orders, err := d.users.CreditOrders(t.Context(), sender)
	if err != nil {
		t.Fatal(err)
	}
	refunds := 0
	for _, o := range orders {
		if o.OutBusinessNo == redpacket.RefundBusinessNo(packetID) {
			refunds++
			if o.Amount != p.Refund || o.Type != credit.Forward {
				t.Fatalf("refund order %+v, want forward %s", o, p.Refund)
			}
		}
	}
	if acc, _ := d.users.CreditAccount(t.Context(), sender); refunds != 1 || acc.Available != 50_00+p.Refund {
		t.Fatalf("%d refund orders, sender %+v: want one, 50.00 + %s", refunds, acc, p.Refund)
	}
	t.Logf("%d grabs before the expiry, %d refused after it, %s refunded once", len(told), late, p.Refund)
}

// TestRedPacketSurvivesRedisFlush FLUSHALLs the private Redis of two serve processes half
// way through 3,000 users grabbing a 1,000-item packet: the packet is rebuilt from the
// database once the grab events in flight are applied, no item is paid twice, none that a
// user was told of is lost, and the rest is still grabbed.
func TestRedPacketSurvivesRedisFlush(t *testing.T) {
	addr := startPrivateRedis(t)
	d := newDeployment(t, addr)
	env := []string{"BIGMARKET_RED_PACKET_PUBLISH_TIMEOUT=1s", "BIGMARKET_RED_PACKET_RECOVER_GRACE=2s"}
	_, a := d.start(t, env...)
	_, b := d.start(t, env...)
	packetID := d.sendPacket(t, a, "", "1000.00", 1000)
	flusher := goredis.NewClient(&goredis.Options{Addr: addr})
	defer flusher.Close()

	var (
		mu    sync.Mutex
		told  = map[string]money.Cents{}
		codes = map[string]int{}
	)
	prefix := testenv.Unique("rf")
	fanOut(3000, 32, func(i int) {
		if i == 1200 {
			if err := flusher.FlushAll(context.Background()).Err(); err != nil {
				t.Errorf("flushall: %v", err)
			}
		}
		user := fmt.Sprintf("%s-%d", prefix, i)
		g := grabUntilFinal(t, []string{a, b}[i%2], user, packetID)
		mu.Lock()
		defer mu.Unlock()
		codes[g.code]++
		if g.code == "0000" || g.code == "0003" {
			told[user] = g.amount
		}
	})
	t.Logf("grabs around the flush: %v", codes)
	if len(told) != 1000 || codes["ERR_RP_001"] != 2000 {
		t.Fatalf("codes %v, %d told of a grab: want all 1,000 items grabbed and 2,000 too late", codes, len(told))
	}
	d.expireNow(t, flusher, packetID) // so the sweep closes it: nothing is left to refund
	p, _ := d.settled(t, packetID, told)
	if p.Refund != 0 || p.State != redpacket.StateClosed {
		t.Fatalf("packet after every item was grabbed: %+v", p)
	}
}

// TestRedPacketGrabsSurviveBrokerOutage stops a private nats-server while users grab:
// their grabs take items but cannot be made durable, so they answer a retryable error.
// Half of them retry once the broker is back and are told their amounts; the other half
// never retry. At expiry the sweep applies every grab the hot state holds, so every item
// taken is credited to its grabber once and the rest is refunded: no pop is forgotten.
func TestRedPacketGrabsSurviveBrokerOutage(t *testing.T) {
	broker := testenv.StartNATSServer(t)
	d := newDeployment(t, "")
	env := []string{"BIGMARKET_NATS_URLS=" + broker.URL, "BIGMARKET_RED_PACKET_SWEEP_EVERY=300ms"}
	_, base := d.start(t, env...)
	sender := testenv.Unique("sender")
	d.topUp(t, sender, 20_00)
	packetID := d.sendPacket(t, base, sender, "20.00", 200)

	broker.Stop()
	prefix := testenv.Unique("rb")
	users := make([]string, 40)
	for i := range users {
		users[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	fanOut(len(users), len(users), func(i int) { // each waits out the publish timeout
		if g := grabOnce(t, base, users[i], packetID); g.code != "ERR_RP_004" {
			t.Errorf("grab with the broker down: %+v, want ERR_RP_004", g)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	broker.Start()
	told := map[string]money.Cents{}
	for _, user := range users[:20] {
		g := grabUntilFinal(t, base, user, packetID)
		if g.code != "0003" || g.amount <= 0 {
			t.Fatalf("retry of %s after the broker is back: %+v, want 0003 with the item taken before", user, g)
		}
		told[user] = g.amount
	}
	d.expireNow(t, d.redis, packetID)
	p, items := d.settled(t, packetID, told)
	credited := 0
	for _, it := range items {
		if it.UserID != "" {
			credited++
			if acc, _ := d.users.CreditAccount(t.Context(), it.UserID); acc.Total != it.Amount {
				t.Fatalf("%s holds %s but has %+v", it.UserID, it.Amount, acc)
			}
		}
	}
	if credited != 40 {
		t.Fatalf("%d items credited, want the 40 taken during the outage", credited)
	}
	t.Logf("40 grabs during the outage, 20 retried: all 40 credited at expiry, %s refunded", p.Refund)
}
