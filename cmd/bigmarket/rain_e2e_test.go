package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// rainTap is a tap's answer as the test reads it.
type rainTap struct {
	Won     bool         `json:"won"`
	N       int          `json:"n"`
	Kind    string       `json:"kind"`
	Amount  *money.Cents `json:"amount"`
	SKU     int64        `json:"sku"`
	AwardID int          `json:"awardId"`
}

type rainReport struct {
	ServerTime   int64 `json:"serverTime"`
	Total        int   `json:"total"`
	Released     int   `json:"released"`
	Granted      int   `json:"granted"`
	SeqNo        int64 `json:"seqNo"`
	SliceSeconds int   `json:"sliceSeconds"`
	Nodes        []struct {
		NodeID string `json:"nodeId"`
		SeqNo  int64  `json:"seqNo"`
	} `json:"nodes"`
	Slices []struct {
		Start   int64 `json:"start"`
		Allowed int   `json:"allowed"`
		Granted int   `json:"granted"`
	} `json:"slices"`
	Ledger *rain.Ledger `json:"ledger"`
}

// createRain creates a session through the admin API and returns its id.
func createRain(t *testing.T, base, adminToken string, body string) int64 {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/admin/rain/sessions", body, "Authorization: Bearer "+adminToken)
	got, err := dataOf[struct {
		SessionID int64 `json:"sessionId"`
	}](r)
	if err != nil || r.Code != "0000" || got.SessionID <= 0 {
		t.Fatalf("create rain session: %+v %v", r, err)
	}
	return got.SessionID
}

func rainReportOf(t *testing.T, base, adminToken string, id int64) rainReport {
	t.Helper()
	r := call(t, "GET", fmt.Sprintf("%s/api/v1/admin/rain/sessions/%d", base, id), nil, "Authorization: Bearer "+adminToken)
	rep, err := dataOf[rainReport](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("rain report: %+v %v", r, err)
	}
	return rep
}

// TestRainTwoProcesses runs a 12-second session through two serve processes while 20,000
// users tap as fast as 64 clients can. It checks, from the wins recorded in SQL (each
// stamped by the answering node's clock), that the plan was kept at every win (granted ≤
// allowed(t), burst included), that the pace kept up with the plan while demand exceeded
// supply (granted ≥ allowed − burst at every whole second), that no prize was won twice and
// nobody won more than the cap, that the last tenth of the session still won, that every
// answered win is recorded and credited once, and that the ledger at the end balances.
func TestRainTwoProcesses(t *testing.T) {
	d := newDeployment(t, "")
	_, a := d.start(t, "BIGMARKET_NODE_ID=node-a", "BIGMARKET_RAIN_SWEEP_EVERY=1s")
	_, b := d.start(t, "BIGMARKET_NODE_ID=node-b", "BIGMARKET_RAIN_SWEEP_EVERY=1s")
	const (
		burst   = 10
		userCap = 2
		length  = 12 * time.Second
	)
	start := time.Now().Add(3 * time.Second).Truncate(time.Second)
	end := start.Add(length)
	id := createRain(t, a, d.adminToken, fmt.Sprintf(`{"title":"开工红包雨","startTime":%d,"endTime":%d,"userCap":%d,"burst":%d,
		"prizes":[{"kind":"cash","amount":"1.00","count":300},{"kind":"cash","min":"0.50","max":"2.00","count":200},
		{"kind":"award","awardId":102,"count":30},{"kind":"sku","sku":9011,"count":20}]}`,
		start.UnixMilli(), end.UnixMilli(), userCap, burst))
	const total = 550

	// Before the start: ERR_RAIN_001, and the session is listed as upcoming with the
	// server's time.
	if r := call(t, "POST", b+"/api/v1/rain/grab", fmt.Sprintf(`{"userId":"early","sessionId":%d}`, id)); r.Code != "ERR_RAIN_001" {
		t.Fatalf("tap before the start: %+v", r)
	}
	list, err := dataOf[struct {
		ServerTime int64 `json:"serverTime"`
		Sessions   []struct {
			SessionID int64  `json:"sessionId"`
			State     string `json:"state"`
		} `json:"sessions"`
	}](call(t, "GET", b+"/api/v1/rain/sessions", nil))
	if err != nil || list.ServerTime == 0 || len(list.Sessions) != 1 || list.Sessions[0].SessionID != id || list.Sessions[0].State != "upcoming" {
		t.Fatalf("sessions: %+v %v", list, err)
	}

	prefix := testenv.Unique("rain")
	user := func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
	var (
		mu    sync.Mutex
		codes = map[string]int{}
		won   = map[string]map[int]rainTap{} // user → n → win answered
		taps  atomic.Int64
	)
	for time.Now().Before(start) {
		time.Sleep(10 * time.Millisecond)
	}
	stop := end.Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(stop) {
				u := user(rng.IntN(20_000))
				r := call(t, "POST", []string{a, b}[w%2]+"/api/v1/rain/grab", fmt.Sprintf(`{"userId":%q,"sessionId":%d}`, u, id))
				taps.Add(1)
				var tap rainTap
				if r.Code == "0000" {
					var err error
					if tap, err = dataOf[rainTap](r); err != nil {
						t.Errorf("tap answer: %+v %v", r, err)
						return
					}
				}
				mu.Lock()
				code := r.Code
				if code == "0000" && !tap.Won {
					code = "miss"
				}
				codes[code]++
				if tap.Won {
					// A tap that meets the user's win still being made durable by
					// another tap is answered that win again, with the same n.
					if won[u] == nil {
						won[u] = map[int]rainTap{}
					}
					if prev, again := won[u][tap.N]; again && (prev.Kind != tap.Kind || prev.SKU != tap.SKU || prev.AwardID != tap.AwardID ||
						(prev.Amount == nil) != (tap.Amount == nil) || prev.Amount != nil && *prev.Amount != *tap.Amount) {
						t.Errorf("%s's win %d answered as %+v and as %+v", u, tap.N, prev, tap)
					}
					won[u][tap.N] = tap
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wins := 0
	for _, ws := range won {
		wins += len(ws)
	}
	t.Logf("%d taps in %s through two processes: %v; %d wins by %d users", taps.Load(), length, codes, wins, len(won))
	for code := range codes {
		if code != "0000" && code != "miss" && code != "ERR_RAIN_002" && code != "ERR_RAIN_003" {
			t.Errorf("unexpected answers %q: %v", code, codes)
		}
	}
	if wins > total || wins == 0 {
		t.Fatalf("%d wins of %d prizes", wins, total)
	}
	for u, ws := range won {
		if len(ws) > userCap {
			t.Fatalf("%s won %d times, cap %d", u, len(ws), userCap)
		}
	}

	// Every answered win is recorded in SQL, once, with its prize.
	ctx := t.Context()
	store := sqlstore.NewRainStore(d.db, d.users)
	var recorded []rain.Win
	testenv.Eventually(t, 2*time.Minute, "every win recorded", func() bool {
		recorded = recorded[:0]
		for u := range won {
			ws, err := store.Wins(ctx, u, id)
			if err != nil {
				t.Fatal(err)
			}
			recorded = append(recorded, ws...)
		}
		return len(recorded) == wins
	})
	seen := map[int]string{}
	byUser := map[string]int{}
	for _, w := range recorded {
		if other, dup := seen[w.Prize.Index]; dup {
			t.Fatalf("prize %d won by %s and %s", w.Prize.Index, other, w.UserID)
		}
		seen[w.Prize.Index] = w.UserID
		byUser[w.UserID]++
		if w.N < 1 || w.N > userCap {
			t.Fatalf("win %s numbered %d", w.MsgID(), w.N)
		}
		told, ok := won[w.UserID][w.N]
		if !ok || told.Kind != string(w.Prize.Kind) || told.SKU != w.Prize.SKU || told.AwardID != w.Prize.AwardID ||
			(told.Amount != nil) != (w.Prize.Kind == rain.KindCash) || told.Amount != nil && *told.Amount != w.Prize.Amount {
			t.Fatalf("win %s recorded as %+v, answered as %+v", w.MsgID(), w.Prize, told)
		}
	}
	for u, ws := range won {
		if byUser[u] != len(ws) {
			t.Fatalf("%s was answered %d wins, %d recorded", u, len(ws), byUser[u])
		}
	}

	// The plan at every win, from the recorded times; and the pace at every whole second
	// while the crowd outnumbered the prizes.
	plan := rain.Quota{SessionID: id, SeqNo: 1, Start: start, End: end, Total: total, Burst: burst, UserCap: userCap}
	times := make([]time.Time, 0, len(recorded))
	for _, w := range recorded {
		times = append(times, w.Time)
	}
	slices.SortFunc(times, time.Time.Compare)
	for i, at := range times {
		if allowed := plan.Allowed(at); i+1 > allowed {
			t.Fatalf("win %d at %s into the session: allowed only %d", i+1, at.Sub(start), allowed)
		}
	}
	for s := time.Second; s < length; s += time.Second {
		at := start.Add(s)
		granted := 0
		for _, w := range times {
			if !w.After(at) {
				granted++
			}
		}
		if floor := plan.Allowed(at) - burst; granted < floor {
			t.Errorf("%s into the session: %d granted, want at least allowed − burst = %d", s, granted, floor)
		}
	}
	late := 0
	for _, at := range times {
		if !at.Before(end.Add(-length / 10)) {
			late++
		}
	}
	if late == 0 {
		t.Fatal("no win in the last tenth of the session")
	}
	t.Logf("wins in the last tenth of the session: %d", late)

	// Cash wins are credited once each, with the amounts the winners were told.
	testenv.Eventually(t, 2*time.Minute, "every cash win credited", func() bool {
		for u, ws := range won {
			var want money.Cents
			for _, w := range ws {
				if w.Kind == "cash" {
					want += *w.Amount
				}
			}
			orders, err := d.users.CreditOrders(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var got money.Cents
			for _, o := range orders {
				if strings.HasPrefix(o.OutBusinessNo, "rain_") {
					got += o.Amount
				}
			}
			if got != want {
				return false
			}
		}
		return true
	})

	// After the end the sweep writes the ledger: granted plus what was left adds up to the
	// armed prizes.
	var rep rainReport
	testenv.Eventually(t, time.Minute, "the session's ledger", func() bool {
		rep = rainReportOf(t, b, d.adminToken, id)
		return rep.Ledger != nil
	})
	l := rep.Ledger
	if l.Granted.Count != wins || l.Granted.Count+l.Unwon.Count+l.Unreleased.Count != total || l.Unreleased.Count != 0 {
		t.Fatalf("ledger %+v with %d wins of %d", l, wins, total)
	}
	if r := call(t, "POST", a+"/api/v1/rain/grab", fmt.Sprintf(`{"userId":%q,"sessionId":%d}`, user(1), id)); r.Code != "ERR_RAIN_002" {
		t.Fatalf("tap after the end: %+v", r)
	}
	// verify's rain checks on the rows: each prize won once and as armed, caps, total,
	// budget, each win granted once as its kind says (credit order, recharge, award
	// record), and the plan at every win.
	rows, err := reconcile.ReadRain(ctx, struct {
		*sqlstore.RainStore
		*sqlstore.UserStore
	}{store, d.users}, id)
	if err != nil {
		t.Fatal(err)
	}
	if ds := reconcile.RainDiscrepancies(rows, 0); len(ds) > 0 {
		t.Fatalf("%d discrepancies, first %v", len(ds), ds[0])
	}
}

// TestRainQuotaChangeReachesEveryNode changes a live session's quota — a higher cap and
// more prizes — and polls both nodes' report until each has the new SeqNo in force; the
// new cap then holds on both.
func TestRainQuotaChangeReachesEveryNode(t *testing.T) {
	d := newDeployment(t, "")
	_, a := d.start(t, "BIGMARKET_NODE_ID=node-a")
	_, b := d.start(t, "BIGMARKET_NODE_ID=node-b")
	start := time.Now().Add(-time.Second)
	end := start.Add(10 * time.Minute)
	id := createRain(t, a, d.adminToken, fmt.Sprintf(`{"title":"quota","startTime":%d,"endTime":%d,"userCap":1,"burst":100,
		"prizes":[{"kind":"cash","amount":"0.10","count":100}]}`, start.UnixMilli(), end.UnixMilli()))
	u := testenv.Unique("rq")
	tap := func(base string) envelope {
		return call(t, "POST", base+"/api/v1/rain/grab", fmt.Sprintf(`{"userId":%q,"sessionId":%d}`, u, id))
	}
	if r := tap(a); r.Code != "0000" {
		t.Fatalf("first tap: %+v", r)
	}
	if r := tap(b); r.Code != "ERR_RAIN_003" {
		t.Fatalf("second tap at cap 1: %+v", r)
	}
	changed := time.Now()
	r := call(t, "PUT", fmt.Sprintf("%s/api/v1/admin/rain/sessions/%d/quota", a, id),
		`{"userCap":3,"prizes":[{"kind":"cash","amount":"0.20","count":50}]}`, "Authorization: Bearer "+d.adminToken)
	q, err := dataOf[struct {
		SeqNo   int64 `json:"seqNo"`
		Total   int   `json:"total"`
		UserCap int   `json:"userCap"`
	}](r)
	if err != nil || r.Code != "0000" || q.SeqNo != 2 || q.Total != 150 || q.UserCap != 3 {
		t.Fatalf("quota change: %+v %+v %v", r, q, err)
	}
	testenv.Eventually(t, time.Minute, "both nodes on SeqNo 2", func() bool {
		rep := rainReportOf(t, b, d.adminToken, id)
		n := 0
		for _, node := range rep.Nodes {
			if (node.NodeID == "node-a" || node.NodeID == "node-b") && node.SeqNo == 2 {
				n++
			}
		}
		return n == 2 && rep.SeqNo == 2
	})
	t.Logf("quota SeqNo 2 in force on both nodes %s after the change was answered", time.Since(changed).Round(time.Millisecond))
	// Cap 3 on both nodes now.
	for i, base := range []string{b, a} {
		if r := tap(base); r.Code != "0000" {
			t.Fatalf("tap %d after the cap rose: %+v", i+2, r)
		}
	}
	if r := tap(b); r.Code != "ERR_RAIN_003" {
		t.Fatalf("fourth tap at cap 3: %+v", r)
	}
	// A quota below what was issued is refused and changes nothing.
	r = call(t, "PUT", fmt.Sprintf("%s/api/v1/admin/rain/sessions/%d/quota", b, id), `{"total":1}`, "Authorization: Bearer "+d.adminToken)
	if r.Code != "0002" {
		t.Fatalf("total below issued: %+v", r)
	}
	if rep := rainReportOf(t, a, d.adminToken, id); rep.SeqNo != 2 || rep.Total != 150 {
		t.Fatalf("after a refused change: %+v", rep)
	}
}
