package reconcile

import (
	"slices"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/redpacket"
)

var (
	now    = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	window = Window{Since: now.Add(-24 * time.Hour), Settled: now.Add(-time.Minute)}
	old    = now.Add(-time.Hour)   // settled
	young  = now.Add(-time.Second) // within the grace
	awards = map[int64]Award{
		101: {Key: award.KeyCreditRandom, Config: "1,100"},
		102: {Key: award.KeyCreditBlacklist, Config: "1"},
		103: {Key: "openai_use_count", Config: "5"},
	}
)

// kinds returns the kinds of ds, sorted, for comparison.
func kinds(ds []Discrepancy) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind)
	}
	slices.Sort(out)
	return out
}

func wantKinds(t *testing.T, name string, ds []Discrepancy, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := kinds(ds); !slices.Equal(got, want) {
		t.Errorf("%s: found %v, want kinds %v", name, ds, want)
	}
}

// record returns a record of award id with its send_award task (config as the task's
// awardConfig) and a prize credit of amount ("" for none).
func record(awardID int64, state award.State, at time.Time, config, amount string) AwardRecord {
	rec := award.Record{UserID: "u1", OrderID: "o1", AwardID: int(awardID), AwardTime: at}
	task := award.NewSendAwardTask(rec, config)
	r := AwardRecord{UserID: "u1", OrderID: "o1", AwardID: awardID, State: state, AwardTime: at,
		Task: Task{Found: true, UserID: task.UserID, Topic: task.Topic, Message: task.Message}}
	if amount != "" {
		r.Credit = Joined{Found: true, UserID: "u1", Type: credit.Forward, Name: credit.NameAward, Amount: cents(amount), Created: at}
	}
	return r
}

func cents(s string) money.Cents {
	c, err := money.Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

func TestAwardRecords(t *testing.T) {
	noTask := record(101, award.StateCompleted, old, "", "5")
	noTask.Task = Task{}
	otherTask := record(101, award.StateCompleted, old, "", "5")
	otherTask.Task.Topic = "send_rebate"
	badMessage := record(101, award.StateCompleted, old, "", "5")
	badMessage.Task.Message = "{"
	otherAward := record(101, award.StateCompleted, old, "", "1")
	otherAward.AwardID = 102
	otherAward.Task = record(101, award.StateCompleted, old, "", "").Task
	reverse := record(101, award.StateCompleted, old, "", "5")
	reverse.Credit.Type = credit.Reverse
	for _, c := range []struct {
		name string
		rec  AwardRecord
		want []string
	}{
		{"credited in range", record(101, award.StateCompleted, old, "", "5"), nil},
		{"credited in the task's range", record(101, award.StateCompleted, old, "200,300", "250"), nil},
		{"blacklist exact", record(102, award.StateCompleted, old, "", "1"), nil},
		{"webhook completed", record(103, award.StateCompleted, old, "", ""), nil},
		{"young create", record(101, award.StateCreate, young, "", ""), nil},
		{"no task", noTask, []string{KindAwardTaskMissing}},
		{"task of another topic", otherTask, []string{KindAwardTaskMissing}},
		{"task message not json", badMessage, []string{KindAwardTaskMissing}},
		{"task of another award", otherAward, []string{KindAwardTaskMissing}},
		{"unknown award", record(999, award.StateCompleted, old, "", ""), []string{KindAwardUnknown}},
		{"completed without credit", record(101, award.StateCompleted, old, "", ""), []string{KindAwardCreditMissing}},
		{"completed with a reverse order", reverse, []string{KindAwardCreditMissing}},
		{"credited but create", record(101, award.StateCreate, young, "", "5"), []string{KindAwardStateStale}},
		{"create past the grace", record(101, award.StateCreate, old, "", ""), []string{KindAwardUndistributed}},
		{"webhook create past the grace", record(103, award.StateCreate, old, "", ""), []string{KindAwardUndistributed}},
		{"credit out of range", record(101, award.StateCompleted, old, "", "150"), []string{KindAwardCreditAmount}},
		{"blacklist other amount", record(102, award.StateCompleted, old, "", "2"), []string{KindAwardCreditAmount}},
		{"webhook award credited", record(103, award.StateCompleted, old, "", "5"), []string{KindAwardCreditUnexpected}},
	} {
		wantKinds(t, c.name, AwardRecords(window, awards, []AwardRecord{c.rec}), c.want...)
	}
}

func TestCreditRange(t *testing.T) {
	for _, c := range []struct {
		key, config string
		lo, hi      money.Cents
		bad         bool
	}{
		{key: award.KeyCreditRandom, config: "1,100", lo: 100, hi: 10000},
		{key: award.KeyCreditRandom, config: " 0.5 , 2 ", lo: 50, hi: 200},
		{key: award.KeyCreditBlacklist, config: "1", lo: 100, hi: 100},
		{key: award.KeyCreditRandom, config: "100", bad: true},
		{key: award.KeyCreditRandom, config: "5,1", bad: true},
		{key: award.KeyCreditBlacklist, config: "x", bad: true},
		{key: award.KeyCreditRandom, config: "0.5, 2.25", lo: 50, hi: 225},
		{key: award.KeyCreditRandom, config: "a,b", bad: true},
		{key: award.KeyCreditBlacklist, config: "1,2", bad: true},
	} {
		lo, hi, err := CreditRange(c.key, c.config)
		if c.bad != (err != nil) || (!c.bad && (lo != c.lo || hi != c.hi)) {
			t.Errorf("CreditRange(%s, %q) = %s..%s, %v; want %s..%s, error %t", c.key, c.config, lo, hi, err, c.lo, c.hi, c.bad)
		}
	}
}

func TestPrizeCredits(t *testing.T) {
	ok := PrizeCredit{UserID: "u1", OrderID: "c1", BusinessNo: "o1", Type: credit.Forward, Amount: "5.00", RecordFound: true}
	orphan := ok
	orphan.RecordFound = false
	wantKinds(t, "explained", PrizeCredits([]PrizeCredit{ok}))
	wantKinds(t, "orphan", PrizeCredits([]PrizeCredit{orphan}), KindCreditOrderOrphan)
}

func TestExchanges(t *testing.T) {
	paid := Joined{Found: true, UserID: "u1", Type: credit.Reverse, Name: "兑换抽奖", Amount: 500, Created: old}
	ex := func(state activity.RechargeState, at time.Time, c Joined) []Exchange {
		return []Exchange{{UserID: "u1", OrderID: "a1", BusinessNo: "b1", Pay: 500, State: state, OrderTime: at, Credit: c}}
	}
	short := paid
	short.Amount = 400
	youngPaid := paid
	youngPaid.Created = young
	wantKinds(t, "completed and paid", Exchanges(window, ex(activity.RechargeCompleted, old, paid)))
	wantKinds(t, "waiting unpaid", Exchanges(window, ex(activity.RechargeWaitPay, old, Joined{})))
	wantKinds(t, "paid within the grace", Exchanges(window, ex(activity.RechargeWaitPay, old, youngPaid)))
	wantKinds(t, "completed unpaid", Exchanges(window, ex(activity.RechargeCompleted, old, Joined{})), KindExchangeUnpaidCompleted)
	wantKinds(t, "paid less", Exchanges(window, ex(activity.RechargeCompleted, old, short)), KindExchangeAmount)
	wantKinds(t, "paid, never completed", Exchanges(window, ex(activity.RechargeWaitPay, old, paid)), KindExchangePaidNotCompleted)
}

func TestRebates(t *testing.T) {
	credited := Joined{Found: true, UserID: "u1", Type: credit.Forward, Name: credit.NameRebate, Amount: 1000, Created: old}
	integral := func(config string, c Joined) []Rebate {
		return []Rebate{{UserID: "u1", OrderID: "r1", Type: rebate.TypeIntegral, Config: config, BizID: "b1", Created: old, Credit: c}}
	}
	sku := func(activityUser string) []Rebate {
		return []Rebate{{UserID: "u1", OrderID: "r2", Type: rebate.TypeSKU, Config: "9014", BizID: "b2", Created: old, ActivityUser: activityUser}}
	}
	wantKinds(t, "integral credited", Rebates(window, integral("10", credited)))
	wantKinds(t, "sku granted", Rebates(window, sku("u1")))
	wantKinds(t, "integral uncredited", Rebates(window, integral("10", Joined{})), KindRebateUndelivered)
	wantKinds(t, "integral other amount", Rebates(window, integral("20", credited)), KindRebateAmount)
	wantKinds(t, "integral bad config", Rebates(window, integral("x", credited)), KindRebateAmount)
	wantKinds(t, "sku not granted", Rebates(window, sku("")), KindRebateUndelivered)
	wantKinds(t, "sku granted to another", Rebates(window, sku("u2")), KindRebateUndelivered)
	// A rebate within the grace is not expected granted yet (a sign-in's credit follows
	// its rebate order through the outbox).
	fresh := integral("10", Joined{})
	fresh[0].Created = young
	wantKinds(t, "integral uncredited within the grace", Rebates(window, fresh))
	freshSKU := sku("")
	freshSKU[0].Created = young
	wantKinds(t, "sku not granted within the grace", Rebates(window, freshSKU))
}

func TestTasks(t *testing.T) {
	task := func(s outbox.State, at time.Time) []TaskRow {
		return []TaskRow{{UserID: "u1", Topic: award.TopicSendAward, MessageID: "m1", State: s, Created: at}}
	}
	wantKinds(t, "completed", Tasks(window, task(outbox.Completed, old)))
	wantKinds(t, "young create", Tasks(window, task(outbox.Create, young)))
	wantKinds(t, "old create", Tasks(window, task(outbox.Create, old)), KindTaskUndelivered)
	wantKinds(t, "old fail", Tasks(window, task(outbox.Fail, old)), KindTaskUndelivered)
}

func TestBalances(t *testing.T) {
	sums := map[string]Sums{}
	AddCredits(sums, []CreditOrder{
		{UserID: "u1", Type: credit.Forward, Amount: 1000},
		{UserID: "u1", Type: credit.Reverse, Amount: 300},
		{UserID: "u2", Type: credit.Forward, Amount: 0},
	})
	if sums["u1"] != (Sums{Forward: 1000, Reverse: 300}) {
		t.Fatalf("sums %v", sums)
	}
	ds, n := Balances([]Account{{UserID: "u1", Total: 1000, Available: 700}}, sums)
	wantKinds(t, "matching", ds)
	if n != 2 {
		t.Errorf("checked %d accounts, want 2 (u2 has orders of nothing and no account)", n)
	}
	ds, _ = Balances([]Account{{UserID: "u1", Total: 1000, Available: 800}}, sums)
	wantKinds(t, "available off", ds, KindCreditBalance)
	ds, _ = Balances(nil, sums)
	wantKinds(t, "no account", ds, KindCreditBalance)
	ds, _ = Balances([]Account{{UserID: "u3", Total: -1, Available: -1}}, map[string]Sums{})
	wantKinds(t, "negative", ds, KindCreditBalance, KindCreditNegative)
}

// Red packet fixtures: u1 sends 3.00 in two items; g1 grabbed 1.00.
const sender, grabber = "u1", "g1"

// route puts every user in database 0, table _000.
func route(string) (int, string) { return 0, "_000" }

func order(user, bizNo, name string, tradeType credit.TradeType, amount string, at time.Time) CreditOrder {
	return CreditOrder{UserID: user, OrderID: "c-" + bizNo, Name: name, Type: tradeType, Amount: cents(amount), BusinessNo: bizNo, Created: at, Table: "_000"}
}

func packetFixture(state redpacket.State, refund string) (Packet, []CreditOrder) {
	p := Packet{ID: "100", SenderID: sender, Total: 300, Refund: cents(refund), Count: 2, State: state, Created: old, Updated: old,
		Items: []Item{{Index: 0, Amount: 100, UserID: grabber, GrabTime: old}, {Index: 1, Amount: 200}}}
	orders := []CreditOrder{
		order(sender, "100", redpacket.NameSend, credit.Reverse, "3", old),
		order(grabber, "100_"+grabber, redpacket.NameGrab, credit.Forward, "1", old),
	}
	if p.Refund > 0 {
		orders = append(orders, order(sender, redpacket.RefundBusinessNo("100"), redpacket.NameRefund, credit.Forward, refund, old))
	}
	return p, orders
}

// checkPackets runs the red packet check as verify feeds it; named are the packets a
// Named lookup finds.
func checkPackets(ps []Packet, orders []CreditOrder, named ...Packet) ([]Discrepancy, int, int) {
	s := NewRedPackets(window, route, nil)
	s.AddWindow(ps)
	s.AddOrders(orders)
	for _, id := range s.Named() {
		for _, p := range named {
			if p.ID == id {
				s.AddNamed([]Packet{p})
			}
		}
	}
	return s.Check()
}

func TestRedPackets(t *testing.T) {
	type mutate func(p *Packet, orders *[]CreditOrder)
	for _, c := range []struct {
		name   string
		state  redpacket.State
		refund string
		mutate mutate
		want   []string
	}{
		{name: "open", state: redpacket.StateOpen, refund: "0"},
		{name: "refunded", state: redpacket.StateRefunded, refund: "2"},
		{name: "closed grabbed whole", state: redpacket.StateClosed, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			p.Items[1].UserID, p.Items[1].GrabTime = "g2", old
			*o = append(*o, order("g2", "100_g2", redpacket.NameGrab, credit.Forward, "2", old))
		}},
		{name: "young grab uncredited", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			p.Items[1].UserID, p.Items[1].GrabTime = "g2", young
		}},
		{name: "items short", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, _ *[]CreditOrder) {
			p.Items = p.Items[:1]
		}, want: []string{KindRedPacketSplit}},
		{name: "overgrabbed", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			p.Items[0].Amount = 400
			(*o)[1].Amount = 400
		}, want: []string{KindRedPacketSplit, KindRedPacketOvergrabbed}},
		{name: "grab uncredited", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			*o = (*o)[:1]
		}, want: []string{KindRedPacketGrabUncredited}},
		{name: "grab credited twice", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			*o = append(*o, (*o)[1])
		}, want: []string{KindRedPacketGrabCredit}},
		{name: "grab credited in another table", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			(*o)[1].Table = "_001"
		}, want: []string{KindRedPacketGrabCredit}},
		{name: "credit of a user no item names", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			*o = append(*o, order("g9", "100_g9", redpacket.NameGrab, credit.Forward, "1", old))
		}, want: []string{KindRedPacketCreditOrphan}},
		{name: "debit missing", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			*o = (*o)[1:]
		}, want: []string{KindRedPacketDebitMissing}},
		{name: "debit short", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			(*o)[0].Amount = 200
		}, want: []string{KindRedPacketDebitAmount}},
		{name: "operator packet debited", state: redpacket.StateOpen, refund: "0", mutate: func(p *Packet, o *[]CreditOrder) {
			p.SenderID = ""
		}, want: []string{KindRedPacketCreditOrphan}},
		{name: "open with a refund", state: redpacket.StateOpen, refund: "2", want: []string{KindRedPacketRefundAmount, KindRedPacketCreditOrphan}},
		{name: "refund missing", state: redpacket.StateRefunded, refund: "2", mutate: func(p *Packet, o *[]CreditOrder) {
			*o = (*o)[:2]
		}, want: []string{KindRedPacketRefundMissing}},
		{name: "refund short", state: redpacket.StateRefunded, refund: "1", want: []string{KindRedPacketRefundAmount}},
		{name: "refund order differs", state: redpacket.StateRefunded, refund: "2", mutate: func(p *Packet, o *[]CreditOrder) {
			(*o)[2].Amount = 100
		}, want: []string{KindRedPacketRefundAmount}},
		{name: "closed with money left", state: redpacket.StateClosed, refund: "0", want: []string{KindRedPacketClosedLeftover}},
		{name: "unknown state", state: "lost", refund: "0", want: []string{KindRedPacketState}},
	} {
		p, orders := packetFixture(c.state, c.refund)
		if c.mutate != nil {
			c.mutate(&p, &orders)
		}
		ds, packets, items := checkPackets([]Packet{p}, orders)
		wantKinds(t, c.name, ds, c.want...)
		if packets != 1 || items != len(p.Items) {
			t.Errorf("%s: checked %d packets, %d items; want 1, %d", c.name, packets, items, len(p.Items))
		}
	}
}

func TestRedPacketsBeforeTheWindow(t *testing.T) {
	p, _ := packetFixture(redpacket.StateOpen, "0")
	p.Created = now.Add(-48 * time.Hour)
	// A grab in the window of a packet sent before it is explained by the packet.
	grab := order(grabber, "100_"+grabber, redpacket.NameGrab, credit.Forward, "1", old)
	ds, packets, _ := checkPackets(nil, []CreditOrder{grab}, p)
	wantKinds(t, "explained by an older packet", ds)
	if packets != 0 {
		t.Errorf("checked %d packets, want 0: the packet is before the window", packets)
	}
	// One whose packet no database holds is an orphan.
	ds, _, _ = checkPackets(nil, []CreditOrder{grab})
	wantKinds(t, "packet nowhere", ds, KindRedPacketCreditOrphan)
	// Other credit orders, and red packet orders within the grace, are not looked up.
	adjust := order(sender, "adj1", "调账", credit.Forward, "1", old)
	youngGrab := order(grabber, "200_"+grabber, redpacket.NameGrab, credit.Forward, "1", young)
	ds, _, _ = checkPackets(nil, []CreditOrder{adjust, youngGrab})
	wantKinds(t, "not red packet orders or young", ds)
}

func TestRedPacketsOnly(t *testing.T) {
	p, orders := packetFixture(redpacket.StateOpen, "0")
	other := p
	other.ID = "200"
	s := NewRedPackets(window, route, map[string]bool{"200": true})
	s.AddWindow([]Packet{p, other})
	s.AddOrders(append(orders, order(grabber, "300_"+grabber, redpacket.NameGrab, credit.Forward, "1", old)))
	if named := s.Named(); len(named) != 0 {
		t.Errorf("Named() = %v with a run's packets only, want none", named)
	}
	ds, packets, _ := s.Check()
	// Packet 200 has no orders of its own: its debit and grab credit are missing.
	wantKinds(t, "only 200", ds, KindRedPacketDebitMissing, KindRedPacketGrabUncredited)
	if packets != 1 {
		t.Errorf("checked %d packets, want 1", packets)
	}
}
