package reconcile

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
)

// Discrepancy kinds of red packet rain (issue 15). The key of each is the session id, or
// the business number of the win it is about.
const (
	// KindRainPrizeTwice: one armed prize (a session's prize index) was won more than once,
	// in one user database or across them.
	KindRainPrizeTwice = "rain_prize_twice"
	// KindRainPrizeMismatch: a win names a prize index the session did not arm, or its
	// kind and value differ from the rain_prize row of that index.
	KindRainPrizeMismatch = "rain_prize_mismatch"
	// KindRainUserCap: a user won more of a session than its per-user cap.
	KindRainUserCap = "rain_user_cap"
	// KindRainWinNo: a user's win numbers in a session are not 1, 2, … k.
	KindRainWinNo = "rain_win_no"
	// KindRainOverTotal: a session gave more wins than its quota's total, or armed a
	// number of prize rows other than the count it states.
	KindRainOverTotal = "rain_over_total"
	// KindRainOverBudget: a session's cash (armed, or won) exceeds its budget.
	KindRainOverBudget = "rain_over_budget"
	// KindRainGrantMissing: a win has no credit order, award record or recharge order of
	// its kind under its business number.
	KindRainGrantMissing = "rain_grant_missing"
	// KindRainGrant: a win's grant is not exactly one of its kind matching the prize (user,
	// amount, award, SKU), or the business number also names a grant of another kind.
	KindRainGrant = "rain_grant"
	// KindRainOverPace: by some instant the session gave more wins than its plan allowed
	// (allowed(t), burst included, with the clock-skew tolerance).
	KindRainOverPace = "rain_over_pace"
)

// RainGrant is what a win's business number (rain.Win.BusinessNo) names in its winner's
// tables: the user_credit_order rows with it as out_business_no, the award records the
// win wrote, and the raffle_activity_order rows (SKU recharges) with it as
// out_business_no.
type RainGrant struct {
	Credits   []CreditOrder
	Awards    []RainAward
	Recharges []RainRecharge
}

// RainAward is a user_award_record row a win wrote.
type RainAward struct {
	UserID  string
	OrderID string
	AwardID int
}

// RainRecharge is a raffle_activity_order row a SKU win wrote.
type RainRecharge struct {
	UserID  string
	OrderID string
	SKU     int64
}

// RainRows is what the rain checks read of one session: the session with its quota in
// force, its armed prizes (rain_prize), its recorded wins from every user database
// (rain_win) and, by business number, what each win granted.
type RainRows struct {
	Session rain.Session
	Prizes  []rain.Prize
	Wins    []rain.Win
	Grants  map[string]RainGrant
}

// RainSource reads a session's rows. The first three are rain.Store's methods, so the
// SQL store of the sessions serves them; RainGrants looks up, in each winner's tables,
// what the wins' business numbers name (keyed by business number).
type RainSource interface {
	Session(ctx context.Context, id int64) (rain.Session, error)
	Prizes(ctx context.Context, id int64) ([]rain.Prize, error)
	SessionWins(ctx context.Context, id int64) ([]rain.Win, error)
	RainGrants(ctx context.Context, wins []rain.Win) (map[string]RainGrant, error)
}

// ReadRain reads session id's rows from src for the checks.
func ReadRain(ctx context.Context, src RainSource, id int64) (RainRows, error) {
	var r RainRows
	var err error
	if r.Session, err = src.Session(ctx, id); err != nil {
		return RainRows{}, fmt.Errorf("rain session %d: %w", id, err)
	}
	if r.Prizes, err = src.Prizes(ctx, id); err != nil {
		return RainRows{}, fmt.Errorf("rain session %d prizes: %w", id, err)
	}
	if r.Wins, err = src.SessionWins(ctx, id); err != nil {
		return RainRows{}, fmt.Errorf("rain session %d wins: %w", id, err)
	}
	if r.Grants, err = src.RainGrants(ctx, r.Wins); err != nil {
		return RainRows{}, fmt.Errorf("rain session %d grants: %w", id, err)
	}
	return r, nil
}

// RainPrizes checks that no prize was won twice and that each win's prize is the armed
// prize of its index, kind and value alike.
func RainPrizes(prizes []rain.Prize, wins []rain.Win) []Discrepancy {
	var f found
	armed := make(map[int]rain.Prize, len(prizes))
	for _, p := range prizes {
		armed[p.Index] = p
	}
	byIndex := map[int][]rain.Win{}
	for _, w := range wins {
		byIndex[w.Prize.Index] = append(byIndex[w.Prize.Index], w)
		switch p, ok := armed[w.Prize.Index]; {
		case !ok:
			f.report(KindRainPrizeMismatch, w.UserID, w.BusinessNo(), "win of prize %s: session %d armed no prize %d",
				w.Prize.Member(), w.SessionID, w.Prize.Index)
		case p != w.Prize:
			f.report(KindRainPrizeMismatch, w.UserID, w.BusinessNo(), "win of prize %s: the armed prize is %s",
				w.Prize.Member(), p.Member())
		}
	}
	for _, idx := range slices.Sorted(maps.Keys(byIndex)) {
		if ws := byIndex[idx]; len(ws) > 1 {
			names := make([]string, len(ws))
			for i, w := range ws {
				names[i] = w.MsgID()
			}
			f.report(KindRainPrizeTwice, ws[0].UserID, ws[0].BusinessNo(), "prize %d won %d times: %v", idx, len(ws), names)
		}
	}
	return f
}

// RainCaps checks each user's wins in the session: at most userCap, numbered 1 to k with
// none missing or repeated (a gap means a win lost between the grab and its row).
func RainCaps(userCap int, wins []rain.Win) []Discrepancy {
	var f found
	byUser := map[string][]int{}
	for _, w := range wins {
		byUser[w.UserID] = append(byUser[w.UserID], w.N)
	}
	for _, user := range slices.Sorted(maps.Keys(byUser)) {
		ns := byUser[user]
		slices.Sort(ns)
		if len(ns) > userCap {
			f.report(KindRainUserCap, user, user, "%d wins, cap %d", len(ns), userCap)
		}
		for i, n := range ns {
			if n != i+1 {
				f.report(KindRainWinNo, user, user, "win numbers %v, want 1 to %d", ns, len(ns))
				break
			}
		}
	}
	return f
}

// RainTotal checks that the session armed the prizes it states and gave no more wins
// than its quota's total.
func RainTotal(s rain.Session, prizes []rain.Prize, wins []rain.Win) []Discrepancy {
	var f found
	key := fmt.Sprint(s.ID)
	if len(prizes) != s.Armed {
		f.report(KindRainOverTotal, "", key, "%d prize rows, the session states %d armed", len(prizes), s.Armed)
	}
	if s.Quota.Total > s.Armed {
		f.report(KindRainOverTotal, "", key, "quota total %d beyond the %d armed", s.Quota.Total, s.Armed)
	}
	if len(wins) > s.Quota.Total {
		f.report(KindRainOverTotal, "", key, "%d wins, quota total %d", len(wins), s.Quota.Total)
	}
	return f
}

// RainCash adds up the cash of prizes.
func RainCash(prizes []rain.Prize) money.Cents {
	var sum money.Cents
	for _, p := range prizes {
		if p.Kind == rain.KindCash {
			sum += p.Amount
		}
	}
	return sum
}

// RainBudget checks a session with a budget: the cash armed, and so the cash won, is
// within it.
func RainBudget(s rain.Session, prizes []rain.Prize, wins []rain.Win) []Discrepancy {
	if s.Budget <= 0 {
		return nil
	}
	var f found
	key := fmt.Sprint(s.ID)
	if armed := RainCash(prizes); armed > s.Budget {
		f.report(KindRainOverBudget, "", key, "armed cash %s, budget %s", armed, s.Budget)
	}
	won := make([]rain.Prize, len(wins))
	for i, w := range wins {
		won[i] = w.Prize
	}
	if paid := RainCash(won); paid > s.Budget {
		f.report(KindRainOverBudget, "", key, "won cash %s, budget %s", paid, s.Budget)
	}
	return f
}

// RainGrants checks that each win was granted once, as its kind says: a cash win one
// forward credit order of its amount to the winner, named rain.NameWin; an award win one
// award record of its award for the winner; a SKU win one recharge order of its SKU for
// the winner; and no grant of another kind under the same business number. An award
// win's credit orders are not looked at: a credit award distributes through one keyed by
// its record, which the award record checks cover.
func RainGrants(wins []rain.Win, grants map[string]RainGrant) []Discrepancy {
	var f found
	for _, w := range wins {
		key := w.BusinessNo()
		g := grants[key]
		var n, matching int
		var stray []string
		switch w.Prize.Kind {
		case rain.KindCash:
			n = len(g.Credits)
			for _, o := range g.Credits {
				if o.UserID == w.UserID && o.Type == credit.Forward && o.Amount == w.Prize.Amount && o.Name == rain.NameWin {
					matching++
				}
			}
			if len(g.Awards) > 0 {
				stray = append(stray, fmt.Sprintf("%d award records", len(g.Awards)))
			}
			if len(g.Recharges) > 0 {
				stray = append(stray, fmt.Sprintf("%d recharge orders", len(g.Recharges)))
			}
		case rain.KindAward:
			n = len(g.Awards)
			for _, a := range g.Awards {
				if a.UserID == w.UserID && a.AwardID == w.Prize.AwardID {
					matching++
				}
			}
			if len(g.Recharges) > 0 {
				stray = append(stray, fmt.Sprintf("%d recharge orders", len(g.Recharges)))
			}
		case rain.KindSKU:
			n = len(g.Recharges)
			for _, r := range g.Recharges {
				if r.UserID == w.UserID && r.SKU == w.Prize.SKU {
					matching++
				}
			}
			if len(g.Credits) > 0 {
				stray = append(stray, fmt.Sprintf("%d credit orders", len(g.Credits)))
			}
			if len(g.Awards) > 0 {
				stray = append(stray, fmt.Sprintf("%d award records", len(g.Awards)))
			}
		default:
			f.report(KindRainGrant, w.UserID, key, "win of prize kind %q", w.Prize.Kind)
			continue
		}
		switch {
		case n == 0:
			f.report(KindRainGrantMissing, w.UserID, key, "%s win %s has no %s", w.Prize.Kind, w.Prize.Member(), grantName(w.Prize.Kind))
		case n != 1 || matching != 1 || len(stray) > 0:
			f.report(KindRainGrant, w.UserID, key, "%s win %s of user %s: %d %s, %d matching; %s", w.Prize.Kind, w.Prize.Member(),
				w.UserID, n, grantName(w.Prize.Kind), matching, describeGrant(g))
		}
	}
	return f
}

// grantName names what a kind of win grants, for a detail.
func grantName(k rain.Kind) string {
	switch k {
	case rain.KindCash:
		return "credit orders"
	case rain.KindAward:
		return "award records"
	}
	return "recharge orders"
}

// describeGrant lists a grant's rows for a detail.
func describeGrant(g RainGrant) string {
	s := "credits " + describeOrders(g.Credits)
	for _, a := range g.Awards {
		s += fmt.Sprintf("; award record %s of award %d for %s", a.OrderID, a.AwardID, a.UserID)
	}
	for _, r := range g.Recharges {
		s += fmt.Sprintf("; recharge %s of sku %d for %s", r.OrderID, r.SKU, r.UserID)
	}
	return s
}

// RainPace checks instants against the plan: at each, the number of instants up to and
// including it is at most allowed(t + skew). Times are wins' win_time (stamped by the
// answering node's clock, so skew is how far a node's clock may run behind the plan's)
// or the instants a client saw wins answered, which follow their win_time. It reports
// one discrepancy for the session: the first instant over the plan, how many were, and
// the largest excess. q is the quota in force at the end: a plan changed mid-session is
// checked as if the last version had held throughout.
func RainPace(q rain.Quota, times []time.Time, skew time.Duration) []Discrepancy {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var first time.Time
	over, worst, worstAt := 0, 0, 0
	for i, t := range ts {
		// With equal instants the last of them binds: its count is the highest and the
		// allowance the same.
		if excess := i + 1 - q.Allowed(t.Add(skew)); excess > 0 {
			if over == 0 {
				first = t
			}
			over++
			if excess > worst {
				worst, worstAt = excess, i
			}
		}
	}
	if over == 0 {
		return nil
	}
	var f found
	f.report(KindRainOverPace, "", fmt.Sprint(q.SessionID),
		"%d of %d wins over the plan (skew %s): first at %s (+%.3fs); worst %d over at win %d, %s (+%.3fs), allowed %d",
		over, len(ts), skew, first.UTC().Format(time.RFC3339Nano), first.Sub(q.Start).Seconds(),
		worst, worstAt+1, ts[worstAt].UTC().Format(time.RFC3339Nano), ts[worstAt].Sub(q.Start).Seconds(), q.Allowed(ts[worstAt].Add(skew)))
	return f
}

// WinTimes returns the wins' win_time.
func WinTimes(wins []rain.Win) []time.Time {
	ts := make([]time.Time, len(wins))
	for i, w := range wins {
		ts[i] = w.Time
	}
	return ts
}

// RainDiscrepancies runs every rain check on a session's rows, for verify: prizes, caps
// and win numbers, total, budget, grants and pacing (with skew), sorted.
func RainDiscrepancies(r RainRows, skew time.Duration) []Discrepancy {
	var ds []Discrepancy
	for _, c := range rainChecks(r, skew) {
		ds = append(ds, c.found...)
	}
	Sort(ds)
	return ds
}

// RainChecks runs every rain check on a session's rows and renders each as a PASS/FAIL
// line for a bench, with the first discrepancies of the failing ones.
func RainChecks(r RainRows, skew time.Duration) Checks {
	var c Checks
	for _, x := range rainChecks(r, skew) {
		detail := x.detail
		if len(x.found) > 0 {
			detail += fmt.Sprintf("; %d discrepancies: %s", len(x.found), firstDiscrepancies(x.found, 3))
		}
		c.Add(x.name, len(x.found) == 0, "%s", detail)
	}
	return c
}

// rainCheck is one check's name, what it looked at and what it found.
type rainCheck struct {
	name, detail string
	found        []Discrepancy
}

func rainChecks(r RainRows, skew time.Duration) []rainCheck {
	s := r.Session
	users := map[string]bool{}
	won := make([]rain.Prize, len(r.Wins))
	for i, w := range r.Wins {
		users[w.UserID] = true
		won[i] = w.Prize
	}
	budget := "no budget"
	if s.Budget > 0 {
		budget = "budget " + s.Budget.String()
	}
	return []rainCheck{
		{"rain prizes", fmt.Sprintf("%d wins of %d armed prizes", len(r.Wins), len(r.Prizes)), RainPrizes(r.Prizes, r.Wins)},
		{"rain caps", fmt.Sprintf("%d winners, cap %d", len(users), s.Quota.UserCap), RainCaps(s.Quota.UserCap, r.Wins)},
		{"rain total", fmt.Sprintf("%d wins, total %d, %d armed", len(r.Wins), s.Quota.Total, s.Armed), RainTotal(s, r.Prizes, r.Wins)},
		{"rain budget", fmt.Sprintf("cash won %s of %s armed, %s", RainCash(won), RainCash(r.Prizes), budget), RainBudget(s, r.Prizes, r.Wins)},
		{"rain grants", fmt.Sprintf("%d wins, each granted once", len(r.Wins)), RainGrants(r.Wins, r.Grants)},
		{"rain pacing", fmt.Sprintf("%d wins within allowed(win_time + %s)", len(r.Wins), skew), RainPace(s.Quota, WinTimes(r.Wins), skew)},
	}
}

// firstDiscrepancies renders up to n discrepancies, in order of kind, user and key.
func firstDiscrepancies(ds []Discrepancy, n int) string {
	ds = slices.Clone(ds)
	Sort(ds)
	s := ""
	for i, d := range ds[:min(n, len(ds))] {
		if i > 0 {
			s += " | "
		}
		s += d.String()
	}
	if len(ds) > n {
		s += fmt.Sprintf(" | and %d more", len(ds)-n)
	}
	return s
}

// RainAnswered is what one user's taps in a session were answered, as a bench saw them:
// wins (0000 with won true), their cash, and taps of unknown outcome (0009, or no
// answer), each of which may have won.
type RainAnswered struct {
	UserID  string
	Wins    int
	Cash    money.Cents
	Unknown int
}

// RainAnswerChecks checks a bench's answers against the session's plan q and its
// recorded wins: (answers) every user has recorded at least the wins it was answered and
// at most those plus its unknown outcomes, and without unknown outcomes exactly their
// cash; (answer pacing) the wins answered by each instant are within allowed(instant +
// skew) — an answer follows its win, so this holds whenever the wins do, and answered
// holds the instants on the plan's clock; (late wins) some win was answered in the last
// tenth of the session, which the pacing exists for.
func RainAnswerChecks(q rain.Quota, answered []RainAnswered, answeredAt []time.Time, skew time.Duration, wins []rain.Win) Checks {
	type tally struct {
		wins int
		cash money.Cents
	}
	recorded := map[string]tally{}
	for _, w := range wins {
		t := recorded[w.UserID]
		t.wins++
		if w.Prize.Kind == rain.KindCash {
			t.cash += w.Prize.Amount
		}
		recorded[w.UserID] = t
	}
	var bad []string
	seen := map[string]bool{}
	var sumWins, sumUnknown int
	for _, a := range answered {
		seen[a.UserID] = true
		sumWins += a.Wins
		sumUnknown += a.Unknown
		r := recorded[a.UserID]
		if r.wins < a.Wins || r.wins > a.Wins+a.Unknown || (a.Unknown == 0 && r.cash != a.Cash) || r.cash < a.Cash {
			bad = append(bad, fmt.Sprintf("%s answered %d wins of %s and %d unknown, recorded %d of %s",
				a.UserID, a.Wins, a.Cash, a.Unknown, r.wins, r.cash))
		}
	}
	for _, user := range slices.Sorted(maps.Keys(recorded)) {
		if !seen[user] {
			r := recorded[user]
			bad = append(bad, fmt.Sprintf("%s recorded %d wins of %s, answered none", user, r.wins, r.cash))
		}
	}
	var c Checks
	detail := fmt.Sprintf("%d wins recorded for %d answered and %d unknown outcomes; %d users differ", len(wins), sumWins, sumUnknown, len(bad))
	if len(bad) > 0 {
		slices.Sort(bad)
		detail += ": " + strings.Join(bad[:min(3, len(bad))], " | ")
	}
	c.Add("rain answers", len(bad) == 0, "%s", detail)
	pace := RainPace(q, answeredAt, skew)
	detail = fmt.Sprintf("%d answered wins within allowed(answer time + %s)", len(answeredAt), skew)
	if len(pace) > 0 {
		detail += "; " + pace[0].Detail
	}
	c.Add("rain answer pacing", len(pace) == 0, "%s", detail)
	from := q.Start.Add(q.End.Sub(q.Start) * 9 / 10)
	late := 0
	for _, t := range answeredAt {
		if !t.Before(from) {
			late++
		}
	}
	c.Add("rain late wins", late > 0, "%d of %d wins answered in the last tenth of the session (from +%.1fs)",
		late, len(answeredAt), from.Sub(q.Start).Seconds())
	return c
}

// RainShortfall measures how far the wins fell behind the plan: the largest
// allowed(t) − Burst − (wins stamped by t) over the instants at (e.g. the end of each
// second while demand exceeded supply), and the first instant it was reached. At most 0
// means the grants kept within the burst of the plan throughout, which is what pacing
// promises when there are always takers: the plan's releases are not withheld.
func RainShortfall(q rain.Quota, times []time.Time, at []time.Time) (worst int, when time.Time) {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	worst = math.MinInt
	for _, t := range at {
		// The wins stamped by t: the first index after t.
		n, _ := slices.BinarySearchFunc(ts, t, func(x, t time.Time) int {
			if x.After(t) {
				return 1
			}
			return -1
		})
		if d := q.Allowed(t) - q.Burst - n; d > worst {
			worst, when = d, t
		}
	}
	return worst, when
}
