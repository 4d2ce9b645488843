package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestRedPacketStore runs the red packet contract of the user store on SQLite and, when
// BIGMARKET_TEST_MYSQL_DSN is set, on MySQL/MariaDB.
func TestRedPacketStore(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newUserFixture(t, db)
		t.Run("send debits the sender with the packet", f.testSendRedPacket)
		t.Run("grabs are credited once", f.testApplyGrabs)
		t.Run("expired packets are refunded once", f.testRefundRedPacket)
	})
}

func (f *userFixture) newPacket(sender string, total money.Cents, amounts ...money.Cents) (redpacket.Packet, []redpacket.Item) {
	now := time.Now()
	p := redpacket.Packet{ID: f.store.PacketID(sender, now), SenderID: sender, Total: total, Count: len(amounts),
		Mode: redpacket.ModeRandom, Greeting: "恭喜发财", State: redpacket.StateOpen,
		ExpireAt: now.Add(time.Hour).Truncate(time.Second), Created: now}
	items := make([]redpacket.Item, len(amounts))
	for i, a := range amounts {
		items[i] = redpacket.Item{Index: i, Amount: a}
	}
	return p, items
}

func (f *userFixture) testSendRedPacket(t *testing.T) {
	ctx := t.Context()
	const sender = "rp-sender-1"
	if errs := f.store.ApplyCredit(ctx, []credit.Change{{UserID: sender, Order: forward(sender, "rp-topup-1", 10_00)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	p, items := f.newPacket(sender, 6_00, 1_00, 2_00, 3_00)
	debit := reverse(sender, p.ID, 6_00)
	if home := p.ID[:2]; home != fmt.Sprintf("%02d", f.router.Route(sender).DB) {
		t.Fatalf("packet id %s does not name the sender's database %d", p.ID, f.router.Route(sender).DB)
	}
	if err := f.store.SendRedPacket(ctx, p, items, debit); err != nil {
		t.Fatal(err)
	}
	if a := f.account(t, sender); a.Available != 4_00 {
		t.Fatalf("sender available %s after sending 6.00 of 10.00", a.Available)
	}
	got, gotItems, err := f.store.RedPacket(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SenderID != sender || got.Total != 6_00 || got.Count != 3 || got.Greeting != "恭喜发财" || got.State != redpacket.StateOpen ||
		!got.ExpireAt.Equal(p.ExpireAt) || len(gotItems) != 3 || gotItems[2].Amount != 3_00 || gotItems[0].UserID != "" {
		t.Fatalf("read back %+v %+v, want %+v %+v", got, gotItems, p, items)
	}
	// Too little credit: nothing written, nothing debited.
	p2, items2 := f.newPacket(sender, 5_00, 5_00)
	if err := f.store.SendRedPacket(ctx, p2, items2, reverse(sender, p2.ID, 5_00)); !errors.Is(err, credit.ErrInsufficient) {
		t.Fatalf("send beyond the balance: %v", err)
	}
	if _, _, err := f.store.RedPacket(ctx, p2.ID); !errors.Is(err, redpacket.ErrNotFound) {
		t.Fatalf("refused packet was written: %v", err)
	}
	if a := f.account(t, sender); a.Available != 4_00 {
		t.Fatalf("refused send changed the balance: %s", a.Available)
	}
	// An operator packet needs no debit; unknown and malformed ids are not found.
	op, opItems := f.newPacket("", 2_00, 1_00, 1_00)
	op.Eligible = []string{"a", "b"}
	if err := f.store.SendRedPacket(ctx, op, opItems, nil); err != nil {
		t.Fatal(err)
	}
	if got, _, err := f.store.RedPacket(ctx, op.ID); err != nil || len(got.Eligible) != 2 || got.SenderID != "" {
		t.Fatalf("operator packet: %+v %v", got, err)
	}
	for _, id := range []string{"", "abc", "99" + p.ID[2:], p.ID[:21] + "x"} {
		if _, _, err := f.store.RedPacket(ctx, id); !errors.Is(err, redpacket.ErrNotFound) {
			t.Errorf("RedPacket(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func (f *userFixture) testApplyGrabs(t *testing.T) {
	ctx := t.Context()
	p, items := f.newPacket("", 10_00, 1_00, 2_00, 3_00, 4_00)
	if err := f.store.SendRedPacket(ctx, p, items, nil); err != nil {
		t.Fatal(err)
	}
	grabs := make([]redpacket.Grab, 4)
	for i := range grabs {
		grabs[i] = redpacket.Grab{PacketID: p.ID, UserID: fmt.Sprintf("rp-grabber-%d", i), Index: i, Amount: items[i].Amount, Time: time.Now()}
	}
	// Concurrent redeliveries of overlapping batches credit each grab once.
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			batch := append([]redpacket.Grab{}, grabs[r%2:]...)
			for i, err := range f.store.ApplyGrabs(ctx, batch) {
				if err != nil {
					t.Errorf("apply grab %s: %v", batch[i].MsgID(), err)
				}
			}
		})
	}
	wg.Wait()
	for i, g := range grabs {
		if a := f.account(t, g.UserID); a.Available != items[i].Amount || a.Total != items[i].Amount {
			t.Errorf("grabber %s credited %+v, want %s once", g.UserID, a, items[i].Amount)
		}
	}
	_, got, err := f.store.RedPacket(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range got {
		if it.UserID != grabs[i].UserID || it.GrabTime.IsZero() {
			t.Errorf("item %d: %+v, want grabbed by %s", i, it, grabs[i].UserID)
		}
	}
	// A grab the items contradict never applies, and credits nothing.
	bad := []redpacket.Grab{
		{PacketID: p.ID, UserID: "rp-thief", Index: 0, Amount: 1_00, Time: time.Now()},
		{PacketID: p.ID, UserID: "rp-grabber-1", Index: 1, Amount: 9_00, Time: time.Now()},
		{PacketID: p.ID, UserID: "rp-late", Index: 7, Amount: 1_00, Time: time.Now()},
		{PacketID: "nope", UserID: "rp-late", Index: 0, Amount: 1_00, Time: time.Now()},
	}
	for i, err := range f.store.ApplyGrabs(ctx, bad) {
		if err == nil || (i < 3 && !errors.Is(err, redpacket.ErrConflict)) || (i == 3 && !errors.Is(err, redpacket.ErrNotFound)) {
			t.Errorf("bad grab %d: %v", i, err)
		}
	}
	if a := f.account(t, "rp-thief"); a.Total != 0 {
		t.Errorf("a conflicting grab was credited: %+v", a)
	}
}

// testRefundRedPacket: the sweep pages expired open packets by cursor, and a refund runs
// once however many sweeps race for it.
func (f *userFixture) testRefundRedPacket(t *testing.T) {
	ctx := t.Context()
	const sender = "rp-refund-sender"
	if errs := f.store.ApplyCredit(ctx, []credit.Change{{UserID: sender, Order: forward(sender, "rp-refund-topup", 100_00)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// Five expired packets of the sender, one still open, one operator packet.
	var expired []string
	for i := range 5 {
		p, items := f.newPacket(sender, 6_00, 1_00, 2_00, 3_00)
		p.ExpireAt = time.Now().Add(-time.Minute).Truncate(time.Second)
		if err := f.store.SendRedPacket(ctx, p, items, reverse(sender, p.ID, 6_00)); err != nil {
			t.Fatal(err)
		}
		expired = append(expired, p.ID)
		if i == 0 { // one grab recorded: 2.00 of it is not refunded
			if errs := f.store.ApplyGrabs(ctx, []redpacket.Grab{{PacketID: p.ID, UserID: "rp-refund-g", Index: 1, Amount: 2_00, Time: time.Now()}}); errs[0] != nil {
				t.Fatal(errs[0])
			}
		}
	}
	live, liveItems := f.newPacket(sender, 1_00, 1_00)
	if err := f.store.SendRedPacket(ctx, live, liveItems, reverse(sender, live.ID, 1_00)); err != nil {
		t.Fatal(err)
	}
	op, opItems := f.newPacket("", 1_00, 1_00)
	op.ExpireAt = time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := f.store.SendRedPacket(ctx, op, opItems, nil); err != nil {
		t.Fatal(err)
	}
	expired = append(expired, op.ID)
	// Pages of two, by cursor: every expired packet once, the live one never.
	seen := map[string]int{}
	var cur redpacket.Cursor
	for {
		ids, next, err := f.store.ExpiredRedPackets(ctx, time.Now(), cur, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			seen[id]++
		}
		if len(ids) < 2 {
			break
		}
		cur = next
	}
	for _, id := range expired {
		if seen[id] != 1 {
			t.Errorf("expired packet %s seen %d times", id, seen[id])
		}
	}
	if len(seen) != len(expired) {
		t.Errorf("sweep saw %d packets, want the %d expired ones", len(seen), len(expired))
	}
	// Concurrent refunds of the same packets: each refunded once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	refunds := map[string][]money.Cents{}
	for range 3 {
		for _, id := range expired {
			wg.Go(func() {
				r, done, err := f.store.RefundRedPacket(ctx, id)
				if err != nil {
					t.Errorf("refund %s: %v", id, err)
					return
				}
				if done {
					mu.Lock()
					refunds[id] = append(refunds[id], r)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for i, id := range expired {
		want := money.Cents(6_00)
		switch {
		case i == 0:
			want = 4_00
		case id == op.ID:
			want = 0
		}
		if len(refunds[id]) != 1 || refunds[id][0] != want {
			t.Errorf("packet %s refunds %v, want one of %s", id, refunds[id], want)
		}
		p, _, err := f.store.RedPacket(ctx, id)
		wantState := redpacket.StateRefunded
		if want == 0 {
			wantState = redpacket.StateClosed
		}
		if err != nil || p.State != wantState || p.Refund != want {
			t.Errorf("packet %s after refund: %+v %v", id, p, err)
		}
	}
	// 100 − 5×6 − 1 spent, 4 + 4×6 back.
	if a := f.account(t, sender); a.Available != 100_00-31_00+28_00 {
		t.Errorf("sender available %s after refunds, want 97.00", a.Available)
	}
	if ids, _, _ := f.store.ExpiredRedPackets(ctx, time.Now(), redpacket.Cursor{}, 10); len(ids) != 0 {
		t.Errorf("refunded packets still swept: %v", ids)
	}
}

// TestRecentRedPackets runs the console's red packet list on SQLite and MySQL: newest
// first (to the second create_time holds; a database's own in the order they were
// written), at most the limit, with the grabs applied counted.
func TestRecentRedPackets(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newUserFixture(t, db)
		ctx := t.Context()
		if list, err := f.store.RecentRedPackets(ctx, 10); err != nil || len(list) != 0 {
			t.Fatalf("no packets: %+v %v", list, err)
		}
		var ids []string
		for range 4 {
			p, items := f.newPacket("", 3_00, 1_00, 2_00)
			if err := f.store.SendRedPacket(ctx, p, items, nil); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, p.ID)
		}
		grab := redpacket.Grab{PacketID: ids[1], UserID: "rp-list-grabber", Index: 1, Amount: 2_00, Time: time.Now()}
		if errs := f.store.ApplyGrabs(ctx, []redpacket.Grab{grab}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		list, err := f.store.RecentRedPackets(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(ids) {
			t.Fatalf("%d packets listed, want %d", len(list), len(ids))
		}
		written := map[string]int{}
		for i, id := range ids {
			written[id] = i
		}
		for i, s := range list {
			p := s.Packet
			want := 0
			if p.ID == ids[1] {
				want = 1
			}
			if s.Grabbed != want || s.GrabbedAmount != money.Cents(want)*2_00 || p.Total != 3_00 || p.Count != 2 ||
				p.State != redpacket.StateOpen || p.SenderID != "" || p.Created.IsZero() {
				t.Errorf("packet %s: %+v", p.ID, s)
			}
			if i == 0 {
				continue
			}
			prev := list[i-1].Packet
			if prev.Created.Before(p.Created) || prev.ID[:2] == p.ID[:2] && written[prev.ID] < written[p.ID] {
				t.Errorf("%s listed before %s: not newest first", prev.ID, p.ID)
			}
		}
		if list, err := f.store.RecentRedPackets(ctx, 2); err != nil || len(list) != 2 {
			t.Fatalf("limit 2: %d packets, %v", len(list), err)
		}
	})
}
