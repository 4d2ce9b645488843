package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// The fault tests' session: 15 seconds of 330 prizes of every kind, two wins a user, a
// burst of 10, tapped by 3,000 users from 32 clients through two serve processes.
const (
	faultRainLength  = 15 * time.Second
	faultRainTotal   = 330
	faultRainCap     = 2
	faultRainBurst   = 10
	faultRainUsers   = 3000
	faultRainWorkers = 32
)

// createFaultRain creates the fault tests' session starting a little after now.
func createFaultRain(t *testing.T, base, adminToken string) (int64, time.Time, time.Time) {
	t.Helper()
	start := time.Now().Add(2 * time.Second).Truncate(time.Second)
	end := start.Add(faultRainLength)
	id := createRain(t, base, adminToken, fmt.Sprintf(`{"title":"fault","startTime":%d,"endTime":%d,"userCap":%d,"burst":%d,
		"prizes":[{"kind":"cash","amount":"1.00","count":200},{"kind":"cash","min":"0.50","max":"2.00","count":100},
		{"kind":"award","awardId":102,"count":20},{"kind":"sku","sku":9011,"count":10}]}`,
		start.UnixMilli(), end.UnixMilli(), faultRainCap, faultRainBurst))
	return id, start, end
}

// rainAnswer is one tap's answer: its code ("miss" for 0000 without a win), the win it
// was told of, and when the answer came.
type rainAnswer struct {
	base string
	user string
	code string
	tap  rainTap
	at   time.Time
}

// rainCrowd taps a session from several clients, each tap a random user of the crowd on
// one of the bases in turn, and keeps every answer.
type rainCrowd struct {
	mu      sync.Mutex
	answers []rainAnswer
	wg      sync.WaitGroup
}

// tapRain starts the crowd on session id until stop; wait for it with crowd.wg.
func tapRain(t *testing.T, bases []string, id int64, prefix string, stop time.Time) *rainCrowd {
	c := &rainCrowd{}
	for w := range faultRainWorkers {
		c.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for time.Now().Before(stop) {
				u := fmt.Sprintf("%s-%d", prefix, rng.IntN(faultRainUsers))
				c.add(tapRainOnce(t, bases[w%len(bases)], u, id))
			}
		})
	}
	return c
}

func (c *rainCrowd) add(a rainAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers = append(c.answers, a)
}

// tapRainOnce sends one tap; it may run on any goroutine.
func tapRainOnce(t *testing.T, base, user string, id int64) rainAnswer {
	return tapRainAs(t, base, user, id, false)
}

// tapRainAs taps as tapRainOnce does; retry marks the tap as the repeat of one answered
// 0009.
func tapRainAs(t *testing.T, base, user string, id int64, retry bool) rainAnswer {
	r := call(t, "POST", base+"/api/v1/rain/grab", fmt.Sprintf(`{"userId":%q,"sessionId":%d,"retry":%t}`, user, id, retry))
	a := rainAnswer{base: base, user: user, code: r.Code, at: time.Now()}
	if r.Code == "0000" {
		var err error
		if a.tap, err = dataOf[rainTap](r); err != nil {
			t.Errorf("tap answer: %+v %v", r, err)
		}
		if !a.tap.Won {
			a.code = "miss"
		}
	}
	return a
}

// codes counts the answers by code.
func (c *rainCrowd) codes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[string]int{}
	for _, a := range c.answers {
		n[a.code]++
	}
	return n
}

// won returns every win the crowd was told of, by user and n, failing when one win was
// told as two prizes.
func (c *rainCrowd) won(t *testing.T) map[string]map[int]rainTap {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	won := map[string]map[int]rainTap{}
	for _, a := range c.answers {
		if !a.tap.Won {
			continue
		}
		if won[a.user] == nil {
			won[a.user] = map[int]rainTap{}
		}
		if prev, again := won[a.user][a.tap.N]; again && !sameTap(prev, a.tap) {
			t.Fatalf("%s's win %d answered as %+v and as %+v", a.user, a.tap.N, prev, a.tap)
		}
		won[a.user][a.tap.N] = a.tap
	}
	return won
}

func sameTap(a, b rainTap) bool {
	return a.Kind == b.Kind && a.SKU == b.SKU && a.AwardID == b.AwardID && (a.Amount == nil) == (b.Amount == nil) &&
		(a.Amount == nil || *a.Amount == *b.Amount)
}

// lastAt returns when the last answer of code came (zero when none did), and how many
// wins were answered after it.
func (c *rainCrowd) lastAt(code string) (time.Time, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	for _, a := range c.answers {
		if a.code == code && a.at.After(last) {
			last = a.at
		}
	}
	after := 0
	for _, a := range c.answers {
		if a.tap.Won && a.at.After(last) {
			after++
		}
	}
	return last, after
}

// checkRainSettled waits for the session's ledger, then checks what the crowd was told
// against the records: every answered win recorded once with its prize, no prize won
// twice, nobody over the cap nor a gap in anyone's win numbers, no more wins than the
// total, every win within the plan at its time (burst included), every cash win credited
// once, the ledger counting the records, and "bigmarket verify" (run with env) clean.
func checkRainSettled(t *testing.T, d *deployment, base string, id int64, won map[string]map[int]rainTap, env ...string) []rain.Win {
	t.Helper()
	ctx := t.Context()
	var rep rainReport
	testenv.Eventually(t, time.Minute, "the session's ledger", func() bool {
		rep = rainReportOf(t, base, d.adminToken, id)
		return rep.Ledger != nil
	})
	store := sqlstore.NewRainStore(d.db, d.users)
	sess, err := store.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The end applies every win the hot state holds: the records are whole now.
	recorded, err := store.SessionWins(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recorded) == 0 || len(recorded) > sess.Quota.Total {
		t.Fatalf("%d wins recorded, total %d", len(recorded), sess.Quota.Total)
	}
	byPrize := map[int]string{}
	byUser := map[string][]int{}
	recordedAs := map[string]rain.Win{}
	for _, w := range recorded {
		if other, dup := byPrize[w.Prize.Index]; dup {
			t.Fatalf("prize %d won by %s and %s", w.Prize.Index, other, w.UserID)
		}
		byPrize[w.Prize.Index] = w.UserID
		byUser[w.UserID] = append(byUser[w.UserID], w.N)
		recordedAs[w.MsgID()] = w
	}
	for u, ns := range byUser {
		slices.Sort(ns)
		if len(ns) > sess.Quota.UserCap || ns[0] != 1 || ns[len(ns)-1] != len(ns) {
			t.Fatalf("%s's wins are numbered %v, cap %d", u, ns, sess.Quota.UserCap)
		}
	}
	answered := 0
	for u, ws := range won {
		for n, told := range ws {
			answered++
			w, ok := recordedAs[rain.Win{SessionID: id, UserID: u, N: n}.MsgID()]
			if !ok || told.Kind != string(w.Prize.Kind) || told.SKU != w.Prize.SKU || told.AwardID != w.Prize.AwardID ||
				(told.Amount != nil) != (w.Prize.Kind == rain.KindCash) || told.Amount != nil && *told.Amount != w.Prize.Amount {
				t.Fatalf("win %s:%s:%d answered as %+v, recorded as %+v (found %v)", fmt.Sprint(id), u, n, told, w.Prize, ok)
			}
		}
	}
	times := make([]time.Time, len(recorded))
	for i, w := range recorded {
		times[i] = w.Time
	}
	slices.SortFunc(times, time.Time.Compare)
	for i, at := range times {
		if allowed := sess.Quota.Allowed(at); i+1 > allowed {
			t.Fatalf("win %d at %s into the session: allowed only %d", i+1, at.Sub(sess.Quota.Start), allowed)
		}
	}
	// Each winner's rain credit orders are its cash wins, once each.
	for u := range byUser {
		var want money.Cents
		for _, w := range recorded {
			if w.UserID == u && w.Prize.Kind == rain.KindCash {
				want += w.Prize.Amount
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
			t.Fatalf("%s credited %s for its rain wins, won %s in cash", u, got, want)
		}
	}
	// The wins a winner reads (through the green channel, whose pending notes a fault may
	// have lost) are its records; 30 winners, to keep it short.
	checked := 0
	for u, ns := range byUser {
		if checked++; checked > 30 {
			break
		}
		r := call(t, "GET", fmt.Sprintf("%s/api/v1/rain/wins?userId=%s&sessionId=%d", base, u, id), nil)
		views, err := dataOf[[]struct {
			N int `json:"n"`
		}](r)
		if err != nil || r.Code != "0000" || len(views) != len(ns) {
			t.Fatalf("%s reads its wins as %+v (%v), recorded %v", u, r, err, ns)
		}
	}
	l := rep.Ledger
	if l.Granted.Count != len(recorded) || l.Granted.Count+l.Unwon.Count+l.Unreleased.Count != sess.Armed {
		t.Fatalf("ledger %+v with %d wins recorded of %d armed", l, len(recorded), sess.Armed)
	}
	// verify looks at everything the deployment wrote (the award records' deliveries to
	// the webhook included), with no grace: it may take a moment to be clean.
	var out string
	testenv.Eventually(t, time.Minute, "bigmarket verify clean", func() (bool, string) {
		var clean bool
		out, clean = d.verify(t, env, "-grace", "0s")
		return clean, out
	})
	if !strings.Contains(out, "1 rain sessions (0 still open)") {
		t.Fatalf("verify did not check the session:\n%s", out)
	}
	t.Logf("%d wins recorded (%d answered), ledger granted %d, unwon %d, unreleased %d; %s", len(recorded), answered,
		l.Granted.Count, l.Unwon.Count, l.Unreleased.Count, strings.TrimSpace(out))
	return recorded
}

// TestRainSurvivesRedisFlush FLUSHALLs the private Redis of two serve processes 40% into
// a session while a crowd taps it: the taps answer 0009 while each node rebuilds the
// session from rain_prize and rain_win once the win consumer has drained, then wins
// resume; nothing goes over the plan, the prizes or a cap, no answered win is lost, and
// verify finds it all clean.
func TestRainSurvivesRedisFlush(t *testing.T) {
	addr := startPrivateRedis(t)
	d := newDeployment(t, addr)
	env := []string{"BIGMARKET_RAIN_SWEEP_EVERY=1s", "BIGMARKET_RAIN_PUBLISH_TIMEOUT=1s", "BIGMARKET_RAIN_RECOVER_GRACE=2s"}
	_, a := d.start(t, append(env, "BIGMARKET_NODE_ID=node-a")...)
	_, b := d.start(t, append(env, "BIGMARKET_NODE_ID=node-b")...)
	id, start, end := createFaultRain(t, a, d.adminToken)
	flusher := goredis.NewClient(&goredis.Options{Addr: addr})
	defer flusher.Close()

	for time.Now().Before(start) {
		time.Sleep(10 * time.Millisecond)
	}
	crowd := tapRain(t, []string{a, b}, id, testenv.Unique("rfl"), end.Add(500*time.Millisecond))
	flushAt := start.Add(faultRainLength * 4 / 10)
	time.Sleep(time.Until(flushAt))
	if err := flusher.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("flushall: %v", err)
	}
	crowd.wg.Wait()
	codes := crowd.codes()
	last, after := crowd.lastAt("0009")
	t.Logf("taps around the flush at +%s: %v; last 0009 at +%s, %d wins answered after it", flushAt.Sub(start), codes,
		last.Sub(start).Round(time.Millisecond), after)
	crowd.logSeconds(t, start)
	for code := range codes {
		if code != "0000" && code != "miss" && code != "0009" && code != "ERR_RAIN_002" && code != "ERR_RAIN_003" {
			t.Errorf("unexpected answers %q: %v", code, codes)
		}
	}
	if codes["0009"] == 0 || last.Before(flushAt) || after == 0 {
		t.Fatalf("codes %v, last 0009 at +%s, %d wins after it: want 0009 while the session was rebuilt, then wins",
			codes, last.Sub(start), after)
	}
	checkRainSettled(t, d, b, id, crowd.won(t))
	// Both processes still serve: the flush took the draws' hot state too.
	for _, base := range []string{a, b} {
		if rep := rainReportOf(t, base, d.adminToken, id); rep.Ledger == nil {
			t.Fatalf("%s reports the session without its ledger: %+v", base, rep)
		}
	}
}

// logSeconds logs the answers by second of the session.
func (c *rainCrowd) logSeconds(t *testing.T, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	per := map[int]map[string]int{}
	for _, a := range c.answers {
		s := int(a.at.Sub(start) / time.Second)
		if per[s] == nil {
			per[s] = map[string]int{}
		}
		per[s][a.code]++
	}
	for s := range faultRainLength/time.Second + 1 {
		t.Logf("+%ds: %v", s, per[int(s)])
	}
}

// TestRainWinsSurviveBrokerOutage stops the private nats-server of two serve processes
// 40% into a session for three seconds while a crowd taps it: a win whose event the
// broker does not store answers 0009, never "won"; that user's next tap once the broker
// is back is answered the same win (the next n), made durable then; a quota change made
// during the outage is in force on both nodes after it, the nodes having kept their
// version throughout; and at the end every win held in Redis is recorded, the answered
// ones as answered, within the plan, the prizes and the caps, and verify is clean.
func TestRainWinsSurviveBrokerOutage(t *testing.T) {
	broker := testenv.StartNATSServer(t)
	d := newDeployment(t, "")
	d.natsURL = broker.URL
	env := []string{"BIGMARKET_NATS_URLS=" + broker.URL, "BIGMARKET_RAIN_SWEEP_EVERY=1s", "BIGMARKET_RAIN_REFRESH_EVERY=1s",
		"BIGMARKET_RAIN_PUBLISH_TIMEOUT=1s", "BIGMARKET_RAIN_RECOVER_GRACE=2s"}
	_, a := d.start(t, append(env, "BIGMARKET_NODE_ID=node-a")...)
	_, b := d.start(t, append(env, "BIGMARKET_NODE_ID=node-b")...)
	id, start, end := createFaultRain(t, a, d.adminToken)

	for time.Now().Before(start) {
		time.Sleep(10 * time.Millisecond)
	}
	crowd := tapRain(t, []string{a, b}, id, testenv.Unique("rbo"), end.Add(500*time.Millisecond))
	stopAt := start.Add(faultRainLength * 4 / 10)
	time.Sleep(time.Until(stopAt))
	broker.Stop()
	down := time.Now()
	// A cap raised while the broker is down: written to SQL and in force on node a at
	// once; node b's refresh reads it from SQL, and the bus catches up once it is back.
	var changed sync.WaitGroup
	changed.Go(func() {
		r := call(t, "PUT", fmt.Sprintf("%s/api/v1/admin/rain/sessions/%d/quota", a, id), `{"userCap":3}`, bearer(d.adminToken))
		if q, err := dataOf[struct {
			SeqNo int64 `json:"seqNo"`
		}](r); err != nil || r.Code != "0000" || q.SeqNo != 2 {
			t.Errorf("quota change with the broker down: %+v %v", r, err)
		}
	})
	time.Sleep(time.Until(down.Add(3 * time.Second)))
	broker.Start()
	up := time.Now()
	changed.Wait()

	// Each user answered 0009 during the outage, and not answered a win since, retries on
	// the other node until the answer is final, once the nodes publish
	// again (they reconnect a moment after the broker is back): no 0009 answered for
	// longer than a publish takes to time out.
	var answers []rainAnswer
	testenv.Eventually(t, 5*time.Second, "the nodes publishing again", func() bool {
		crowd.mu.Lock()
		answers = slices.Clone(crowd.answers)
		crowd.mu.Unlock()
		last := time.Time{}
		for _, ans := range answers {
			if ans.code == "0009" && ans.at.After(last) {
				last = ans.at
			}
		}
		return time.Since(last) > 1500*time.Millisecond
	})
	heldBy := map[string]string{} // user → the base that answered it 0009
	slices.SortFunc(answers, func(x, y rainAnswer) int { return x.at.Compare(y.at) })
	for _, ans := range answers {
		switch {
		case ans.tap.Won:
			delete(heldBy, ans.user) // answered again by the crowd already
		case ans.code == "0009" && ans.at.After(down):
			heldBy[ans.user] = ans.base
		}
	}
	// The holders retry as a client does after a 0009, on the other node: the retry asks
	// Redis, which answers the held win whichever node answered the 0009.
	otherOf := map[string]string{a: b, b: a}
	retried := 0
	for user, base := range heldBy {
		var ans rainAnswer
		deadline := time.Now().Add(30 * time.Second)
		for {
			ans = tapRainAs(t, otherOf[base], user, id, true)
			crowd.add(ans)
			if ans.code != "0009" || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ans.tap.Won {
			retried++
		}
	}
	crowd.wg.Wait()
	// A user answered 0009 during the outage holds a win whose event the broker did not
	// store: the script returns it to the user's next tap that reaches Redis before taking
	// any other, so each user's wins are first answered in order, 1, 2, … with none
	// skipped. (The retry above is marked as one, which sends it to the script on any
	// node; a plain tap may be answered a miss from a node's paced note without asking
	// Redis, not knowing of the win held — counted, not an error.)
	crowd.mu.Lock()
	answers = slices.Clone(crowd.answers)
	crowd.mu.Unlock()
	slices.SortFunc(answers, func(x, y rainAnswer) int { return x.at.Compare(y.at) })
	holders := map[string]bool{}
	hidden := 0
	byUser := map[string][]rainAnswer{}
	for _, ans := range answers {
		byUser[ans.user] = append(byUser[ans.user], ans)
	}
	for user, mine := range byUser {
		var order []int
		holding := false
		for _, ans := range mine {
			switch {
			case ans.tap.Won:
				if !slices.Contains(order, ans.tap.N) {
					order = append(order, ans.tap.N)
				}
				holding = false
			case ans.code == "0009" && ans.at.After(down):
				holders[user], holding = true, true
			case holding:
				hidden++
			}
		}
		for i, n := range order {
			if n != i+1 {
				t.Errorf("%s's wins first answered in the order %v", user, order)
				break
			}
		}
	}

	codes := crowd.codes()
	crowd.logSeconds(t, start)
	t.Logf("taps around the outage from +%s to +%s: %v; %d users held a win, %d answered it on retrying; %d answers hid a held win",
		down.Sub(start), up.Sub(start).Round(time.Millisecond), codes, len(holders), retried, hidden)
	for code := range codes {
		if code != "0000" && code != "miss" && code != "0009" && code != "ERR_RAIN_002" && code != "ERR_RAIN_003" {
			t.Errorf("unexpected answers %q: %v", code, codes)
		}
	}
	// Both nodes kept deciding by their version during the outage: misses, from each.
	crowd.mu.Lock()
	missed := map[string]int{}
	for _, ans := range crowd.answers {
		if ans.code == "miss" && ans.at.After(down.Add(500*time.Millisecond)) && ans.at.Before(up) {
			missed[ans.base]++
		}
	}
	crowd.mu.Unlock()
	if codes["0009"] == 0 || len(holders) == 0 || missed[a] == 0 || missed[b] == 0 {
		t.Fatalf("codes %v, %d users held a win, misses during the outage by node %v: want 0009s, and both nodes pacing",
			codes, len(holders), missed)
	}
	testenv.Eventually(t, time.Minute, "both nodes on SeqNo 2", func() (bool, string) {
		rep := rainReportOf(t, b, d.adminToken, id)
		n := 0
		for _, node := range rep.Nodes {
			if (node.NodeID == "node-a" || node.NodeID == "node-b") && node.SeqNo == 2 {
				n++
			}
		}
		return n == 2 && rep.SeqNo == 2, fmt.Sprintf("%+v", rep.Nodes)
	})
	won := crowd.won(t)
	recorded := checkRainSettled(t, d, b, id, won, "BIGMARKET_NATS_URLS="+broker.URL)
	// Every win held since the outage was answered in the end: the retry, on the other
	// node, returned it.
	for _, w := range recorded {
		if _, told := won[w.UserID][w.N]; holders[w.UserID] && !told {
			t.Errorf("win %s of a user answered 0009 during the outage is recorded but was never answered", w.MsgID())
		}
	}
}
