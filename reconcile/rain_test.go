package reconcile

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/rain"
)

var rainStart = time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)

// rainSession is session 7: ten seconds, ten prizes released one a second after a burst
// of one (allowed(t) = 1 + ⌊t/1s⌋), two wins a user, a budget of 9.00.
func rainSession() rain.Session {
	return rain.Session{ID: 7, Armed: 10, Budget: 900, State: rain.StateEnded, Quota: rain.Quota{
		SessionID: 7, SeqNo: 1, Start: rainStart, End: rainStart.Add(10 * time.Second), Total: 10, Burst: 1, UserCap: 2,
	}}
}

// rainPrizes are eight cash prizes of 1.00 (0-7), award 101 (8) and a draw of sku 9011 (9).
func rainPrizes() []rain.Prize {
	var ps []rain.Prize
	for i := range 8 {
		ps = append(ps, rain.Prize{Index: i, Kind: rain.KindCash, Amount: 100})
	}
	return append(ps, rain.Prize{Index: 8, Kind: rain.KindAward, AwardID: 101}, rain.Prize{Index: 9, Kind: rain.KindSKU, SKU: 9011})
}

func rainWin(user string, n, index int, at time.Duration) rain.Win {
	return rain.Win{SessionID: 7, UserID: user, N: n, Prize: rainPrizes()[index], Time: rainStart.Add(at)}
}

// rainWins are four wins within the plan: a and b twice each, one of every kind.
func rainWins() []rain.Win {
	return []rain.Win{
		rainWin("a", 1, 0, 0),
		rainWin("b", 1, 8, 1100*time.Millisecond),
		rainWin("a", 2, 9, 2*time.Second),
		rainWin("b", 2, 3, 3500*time.Millisecond),
	}
}

// grantsOf grants every win as it should be: a credit order of a cash win, an award record
// of an award win (and the credit order of a credit award's distribution, which the
// check leaves to the award checks), a recharge of a SKU win.
func grantsOf(wins []rain.Win) map[string]RainGrant {
	g := map[string]RainGrant{}
	for _, w := range wins {
		switch w.Prize.Kind {
		case rain.KindCash:
			g[w.BusinessNo()] = RainGrant{Credits: []CreditOrder{{UserID: w.UserID, OrderID: "c" + w.MsgID(), Name: rain.NameWin,
				Type: credit.Forward, Amount: w.Prize.Amount, BusinessNo: w.BusinessNo()}}}
		case rain.KindAward:
			g[w.BusinessNo()] = RainGrant{Awards: []RainAward{{UserID: w.UserID, OrderID: w.BusinessNo(), AwardID: w.Prize.AwardID}},
				Credits: []CreditOrder{{UserID: w.UserID, Name: "award", Type: credit.Forward, Amount: 5, BusinessNo: w.BusinessNo()}}}
		case rain.KindSKU:
			g[w.BusinessNo()] = RainGrant{Recharges: []RainRecharge{{UserID: w.UserID, OrderID: "r" + w.MsgID(), SKU: w.Prize.SKU}}}
		}
	}
	return g
}

func rainRows() RainRows {
	return RainRows{Session: rainSession(), Prizes: rainPrizes(), Wins: rainWins(), Grants: grantsOf(rainWins())}
}

func TestRainPrizes(t *testing.T) {
	t.Parallel()
	wantKinds(t, "clean", RainPrizes(rainPrizes(), rainWins()))
	twice := append(rainWins(), rainWin("c", 1, 3, 4*time.Second))
	ds := RainPrizes(rainPrizes(), twice)
	wantKinds(t, "prize 3 won by b and c", ds, KindRainPrizeTwice)
	if len(ds) == 1 && ds[0].Key != "rain_7_b_2" {
		t.Errorf("prize twice keyed %q, want the first win's business number rain_7_b_2", ds[0].Key)
	}
	other := rainWins()
	other[3].Prize.Amount = 500
	wantKinds(t, "a cash win of another amount", RainPrizes(rainPrizes(), other), KindRainPrizeMismatch)
	kind := rainWins()
	kind[1].Prize = rain.Prize{Index: 8, Kind: rain.KindAward, AwardID: 102}
	wantKinds(t, "an award win of another award", RainPrizes(rainPrizes(), kind), KindRainPrizeMismatch)
	unarmed := append(rainWins(), rain.Win{SessionID: 7, UserID: "c", N: 1, Prize: rain.Prize{Index: 10, Kind: rain.KindCash, Amount: 100}})
	wantKinds(t, "a prize never armed", RainPrizes(rainPrizes(), unarmed), KindRainPrizeMismatch)
}

func TestRainCaps(t *testing.T) {
	t.Parallel()
	wantKinds(t, "clean", RainCaps(2, rainWins()))
	wantKinds(t, "over the cap", RainCaps(2, append(rainWins(), rainWin("a", 3, 4, 4*time.Second))), KindRainUserCap)
	wantKinds(t, "cap 1", RainCaps(1, rainWins()), KindRainUserCap, KindRainUserCap)
	gap := rainWins()
	gap[2].N = 3
	wantKinds(t, "a's wins 1 and 3", RainCaps(2, gap), KindRainWinNo)
	repeated := rainWins()
	repeated[3].N = 1
	wantKinds(t, "b's wins 1 and 1", RainCaps(2, repeated), KindRainWinNo)
	late := []rain.Win{rainWin("c", 2, 4, time.Second)}
	wantKinds(t, "c's only win numbered 2", RainCaps(2, late), KindRainWinNo)
}

func TestRainTotal(t *testing.T) {
	t.Parallel()
	wantKinds(t, "clean", RainTotal(rainSession(), rainPrizes(), rainWins()))
	small := rainSession()
	small.Quota.Total = 3
	wantKinds(t, "four wins of a total of 3", RainTotal(small, rainPrizes(), rainWins()), KindRainOverTotal)
	wantKinds(t, "a prize row missing", RainTotal(rainSession(), rainPrizes()[:9], rainWins()), KindRainOverTotal)
	over := rainSession()
	over.Quota.Total = 11
	wantKinds(t, "a total beyond the armed", RainTotal(over, rainPrizes(), rainWins()), KindRainOverTotal)
}

func TestRainBudget(t *testing.T) {
	t.Parallel()
	wantKinds(t, "8.00 armed of 9.00", RainBudget(rainSession(), rainPrizes(), rainWins()))
	tight := rainSession()
	tight.Budget = 700
	wantKinds(t, "8.00 armed of 7.00", RainBudget(tight, rainPrizes(), rainWins()), KindRainOverBudget)
	tighter := rainSession()
	tighter.Budget = 150
	wantKinds(t, "8.00 armed and 2.00 won of 1.50", RainBudget(tighter, rainPrizes(), rainWins()), KindRainOverBudget, KindRainOverBudget)
	none := rainSession()
	none.Budget = 0
	wantKinds(t, "no budget", RainBudget(none, rainPrizes(), rainWins()))
	if got := RainCash(rainPrizes()); got != 800 {
		t.Errorf("RainCash = %s, want 8.00", got)
	}
}

func TestRainGrants(t *testing.T) {
	t.Parallel()
	wins := rainWins() // a: cash 0, sku 9; b: award 8, cash 3
	wantKinds(t, "clean", RainGrants(wins, grantsOf(wins)))

	cases := []struct {
		name   string
		change func(g map[string]RainGrant)
		want   []string
	}{
		{"a cash win uncredited", func(g map[string]RainGrant) { delete(g, "rain_7_a_1") }, []string{KindRainGrantMissing}},
		{"a cash win credited twice", func(g map[string]RainGrant) {
			x := g["rain_7_a_1"]
			x.Credits = append(x.Credits, x.Credits[0])
			g["rain_7_a_1"] = x
		}, []string{KindRainGrant}},
		{"a cash win credited another amount", func(g map[string]RainGrant) { g["rain_7_b_2"].Credits[0].Amount = 99 }, []string{KindRainGrant}},
		{"a cash win debited", func(g map[string]RainGrant) { g["rain_7_b_2"].Credits[0].Type = credit.Reverse }, []string{KindRainGrant}},
		{"a cash win credited to another user", func(g map[string]RainGrant) { g["rain_7_b_2"].Credits[0].UserID = "a" }, []string{KindRainGrant}},
		{"a cash win credited under another name", func(g map[string]RainGrant) { g["rain_7_b_2"].Credits[0].Name = "other" }, []string{KindRainGrant}},
		{"a cash win with an award record too", func(g map[string]RainGrant) {
			x := g["rain_7_a_1"]
			x.Awards = []RainAward{{UserID: "a", AwardID: 101}}
			g["rain_7_a_1"] = x
		}, []string{KindRainGrant}},
		{"an award win without its record", func(g map[string]RainGrant) {
			x := g["rain_7_b_1"]
			x.Awards = nil
			g["rain_7_b_1"] = x
		}, []string{KindRainGrantMissing}},
		{"an award win recorded as another award", func(g map[string]RainGrant) { g["rain_7_b_1"].Awards[0].AwardID = 102 }, []string{KindRainGrant}},
		{"a SKU win not recharged", func(g map[string]RainGrant) { delete(g, "rain_7_a_2") }, []string{KindRainGrantMissing}},
		{"a SKU win recharged with another SKU", func(g map[string]RainGrant) { g["rain_7_a_2"].Recharges[0].SKU = 9012 }, []string{KindRainGrant}},
		{"a SKU win credited cash too", func(g map[string]RainGrant) {
			x := g["rain_7_a_2"]
			x.Credits = g["rain_7_a_1"].Credits
			g["rain_7_a_2"] = x
		}, []string{KindRainGrant}},
	}
	for _, c := range cases {
		g := grantsOf(wins)
		c.change(g)
		wantKinds(t, c.name, RainGrants(wins, g), c.want...)
	}
	odd := []rain.Win{{SessionID: 7, UserID: "a", N: 1, Prize: rain.Prize{Kind: "gold"}}}
	wantKinds(t, "a win of an unknown kind", RainGrants(odd, nil), KindRainGrant)
}

func TestRainPace(t *testing.T) {
	t.Parallel()
	q := rainSession().Quota
	at := func(ds ...time.Duration) []time.Time {
		ts := make([]time.Time, len(ds))
		for i, d := range ds {
			ts[i] = rainStart.Add(d)
		}
		return ts
	}
	ms := time.Millisecond
	wantKinds(t, "the burst at once, then one a second", RainPace(q, at(0, 1000*ms, 2500*ms, 3000*ms), 0))
	wantKinds(t, "out of order", RainPace(q, at(3000*ms, 0, 2500*ms, 1000*ms), 0))
	wantKinds(t, "the second win half a second early", RainPace(q, at(0, 500*ms), 0), KindRainOverPace)
	wantKinds(t, "the same within the skew", RainPace(q, at(0, 500*ms), 600*ms))
	wantKinds(t, "two wins at the very start, burst 1", RainPace(q, at(0, 0), 0), KindRainOverPace)
	wantKinds(t, "all ten at the end", RainPace(q, at(10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second,
		10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second), 0))
	wantKinds(t, "eleven at the end", RainPace(q, at(10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second,
		10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 10*time.Second), time.Hour), KindRainOverPace)

	// Many early wins count once, naming the first and the worst.
	ds := RainPace(q, at(0, 100*ms, 200*ms, 300*ms, 2*time.Second), 0)
	wantKinds(t, "a rush", ds, KindRainOverPace)
	if len(ds) == 1 && ds[0].Key != "7" {
		t.Errorf("pace keyed %q, want the session 7", ds[0].Key)
	}

	// Weighted: two slices of 5 s, all the weight in the second; burst 0.
	w := q
	w.Burst, w.Weights = 0, []int{0, 1}
	wantKinds(t, "a win in an empty slice", RainPace(w, at(4*time.Second), 0), KindRainOverPace)
	wantKinds(t, "two wins a second into the weighted slice", RainPace(w, at(5500*ms, 6000*ms), 0))
}

func TestRainChecks(t *testing.T) {
	t.Parallel()
	skew := 200 * time.Millisecond
	c := RainChecks(rainRows(), skew)
	names := make([]string, len(c))
	for i, x := range c {
		names[i] = x.Name
	}
	want := []string{"rain prizes", "rain caps", "rain total", "rain budget", "rain grants", "rain pacing"}
	if !slices.Equal(names, want) {
		t.Fatalf("lines %v, want %v", names, want)
	}
	wantFailed(t, "clean", c)
	if ds := RainDiscrepancies(rainRows(), skew); len(ds) != 0 {
		t.Errorf("clean rows: %v", ds)
	}

	bad := rainRows()
	bad.Wins = append(bad.Wins, rainWin("b", 3, 0, 500*time.Millisecond)) // b's third win, of a's prize, too early, uncredited
	wantFailed(t, "a third win of a won prize", RainChecks(bad, skew), "rain prizes", "rain caps", "rain grants", "rain pacing")
	ds := RainDiscrepancies(bad, skew)
	wantKinds(t, "a third win of a won prize", ds, KindRainGrantMissing, KindRainOverPace, KindRainPrizeTwice, KindRainUserCap)
}

// rainSource serves fixed rows, or fails where an error is set.
type rainSource struct {
	rows      RainRows
	err       error
	failGrant bool
	grantsFor []rain.Win
}

func (s *rainSource) Session(_ context.Context, id int64) (rain.Session, error) {
	if s.rows.Session.ID != id {
		return rain.Session{}, rain.ErrNotFound
	}
	return s.rows.Session, nil
}

func (s *rainSource) Prizes(context.Context, int64) ([]rain.Prize, error) { return s.rows.Prizes, nil }

func (s *rainSource) SessionWins(context.Context, int64) ([]rain.Win, error) {
	return s.rows.Wins, s.err
}

func (s *rainSource) RainGrants(_ context.Context, wins []rain.Win) (map[string]RainGrant, error) {
	s.grantsFor = wins
	if s.failGrant {
		return nil, errors.New("grants down")
	}
	return s.rows.Grants, nil
}

func TestReadRain(t *testing.T) {
	t.Parallel()
	src := &rainSource{rows: rainRows()}
	got, err := ReadRain(context.Background(), src, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Wins) != 4 || len(got.Prizes) != 10 || len(got.Grants) != 4 || got.Session.ID != 7 {
		t.Errorf("ReadRain = %+v", got)
	}
	if len(src.grantsFor) != 4 {
		t.Errorf("grants read for %d wins, want the 4 recorded", len(src.grantsFor))
	}
	if _, err := ReadRain(context.Background(), src, 8); !errors.Is(err, rain.ErrNotFound) {
		t.Errorf("unknown session: %v, want ErrNotFound", err)
	}
	down := errors.New("user database down")
	if _, err := ReadRain(context.Background(), &rainSource{rows: rainRows(), err: down}, 7); !errors.Is(err, down) {
		t.Errorf("wins unreadable: %v", err)
	}
	if _, err := ReadRain(context.Background(), &rainSource{rows: rainRows(), failGrant: true}, 7); err == nil {
		t.Error("grants unreadable: no error")
	}
}

func TestRainAnswerChecks(t *testing.T) {
	t.Parallel()
	q := rainSession().Quota
	skew := 200 * time.Millisecond
	// a won cash 1.00 and a draw; b an award and cash 1.00; answered 50 ms after each win,
	// the last in the last tenth of the session.
	answered := func() []RainAnswered {
		return []RainAnswered{{UserID: "a", Wins: 2, Cash: 100}, {UserID: "b", Wins: 2, Cash: 100}, {UserID: "c"}}
	}
	at := func() []time.Time {
		var ts []time.Time
		for _, w := range rainWins() {
			ts = append(ts, w.Time.Add(50*time.Millisecond))
		}
		return append(ts[:3], rainStart.Add(9500*time.Millisecond))
	}
	wantFailed(t, "clean", RainAnswerChecks(q, answered(), at(), skew, rainWins()))

	lost := answered()
	lost[0].Wins = 3
	wantFailed(t, "an answered win unrecorded", RainAnswerChecks(q, lost, at(), skew, rainWins()), "rain answers")
	cash := answered()
	cash[1].Cash = 200
	wantFailed(t, "answered cash unrecorded", RainAnswerChecks(q, cash, at(), skew, rainWins()), "rain answers")
	unanswered := answered()[:1]
	wantFailed(t, "b's recorded wins never answered", RainAnswerChecks(q, unanswered, at(), skew, rainWins()), "rain answers")
	unknown := answered()
	unknown[0].Wins, unknown[0].Cash, unknown[0].Unknown = 1, 100, 1
	wantFailed(t, "a's second win answered 0009", RainAnswerChecks(q, unknown, at(), skew, rainWins()))
	extra := answered()
	extra[2].Unknown = 1
	wantFailed(t, "c's 0009 that won nothing", RainAnswerChecks(q, extra, at(), skew, rainWins()))

	rush := append(at(), rainStart.Add(100*time.Millisecond))
	wantFailed(t, "a win answered before the plan allowed it", RainAnswerChecks(q, answered(), rush, skew, rainWins()), "rain answer pacing")
	early := at()[:3]
	wantFailed(t, "no win in the last tenth", RainAnswerChecks(q, answered(), early, skew, rainWins()), "rain late wins")
}

func TestRainShortfall(t *testing.T) {
	t.Parallel()
	q := rainSession().Quota // allowed(t) = 1 + ⌊t/1s⌋, burst 1
	at := func(ds ...time.Duration) []time.Time {
		ts := make([]time.Time, len(ds))
		for i, d := range ds {
			ts[i] = rainStart.Add(d)
		}
		return ts
	}
	s := time.Second
	seconds := at(s, 2*s, 3*s, 4*s)
	if worst, when := RainShortfall(q, at(0, 900*time.Millisecond, 1900*time.Millisecond, 3*s, 3900*time.Millisecond), seconds); worst != -1 || !when.Equal(rainStart.Add(s)) {
		t.Errorf("ahead of the plan less the burst: worst %d at %s, want -1 at +1s", worst, when)
	}
	// Wins exactly at the seconds count by them.
	if worst, _ := RainShortfall(q, at(s, 2*s, 3*s, 4*s), seconds); worst != 0 {
		t.Errorf("one a second: worst %d, want 0", worst)
	}
	if worst, when := RainShortfall(q, at(s, 2*s), seconds); worst != 2 || !when.Equal(rainStart.Add(4*s)) {
		t.Errorf("two wins by +4s: worst %d at %s, want 2 at +4s", worst, when)
	}
	if worst, _ := RainShortfall(q, nil, seconds); worst != 4 {
		t.Errorf("no wins: worst %d, want 4", worst)
	}
}
