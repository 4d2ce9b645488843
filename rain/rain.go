// Package rain is red packet rain: timed sessions whose prizes (cash, a SKU's draws, award
// records) are armed up front and released at a controlled pace, so that a user who joins
// late still wins; every win is made durable before it is answered and credited once.
package rain

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/money"
)

// Outcomes of the rain operations, mapped to codes by httpapi.
var (
	// ErrNotFound is an unknown session (0002).
	ErrNotFound = errors.New("rain session not found")
	// ErrInvalid is a request that cannot be served as asked (0002).
	ErrInvalid = errors.New("invalid rain request")
	// ErrNotStarted is a grab before the session's start (ERR_RAIN_001).
	ErrNotStarted = errors.New("rain session not started")
	// ErrEnded is a grab after the session's end, or when its pool is empty (ERR_RAIN_002).
	ErrEnded = errors.New("rain session ended or its pool is empty")
	// ErrCapReached is a user who has won the session's cap of wins (ERR_RAIN_003).
	ErrCapReached = errors.New("rain session user cap reached")
	// ErrUnavailable is a state that is not known now — hot state lost and being rebuilt,
	// a win the broker has not acknowledged, no quota version on this node yet: retry (0009).
	ErrUnavailable = errors.New("rain session temporarily unavailable")
	// ErrUnconfirmed is a tap whose outcome the hot state could not confirm durable there
	// (its replicas did not acknowledge it: the master may be cut off, and a win taken
	// there lost when it rejoins). It comes wrapped with ErrUnavailable (retry) but asks for
	// no rebuild; a win taken stays unacknowledged in the hot state, and the user's next
	// tap asks for it again and publishes it once it is confirmed.
	ErrUnconfirmed = errors.New("rain tap not confirmed by the hot state's replicas")
	// ErrConflict is a quota version written over a newer one, or a win the records
	// contradict: no retry makes it apply.
	ErrConflict = errors.New("rain conflict")
)

// Kind is what a prize gives.
type Kind string

// Prize kinds.
const (
	// KindCash credits an amount to the winner's credit account.
	KindCash Kind = "cash"
	// KindSKU recharges one SKU's count of draws (its stock reserved when the prize was armed).
	KindSKU Kind = "sku"
	// KindAward writes an award record distributed as a drawn award is.
	KindAward Kind = "award"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindCash || k == KindSKU || k == KindAward }

// code is k's one-letter tag in a prize's set member.
func (k Kind) code() string {
	switch k {
	case KindCash:
		return "c"
	case KindSKU:
		return "s"
	case KindAward:
		return "a"
	}
	return "?"
}

// PrizeSpec is one line of a session's prizes as the operator asks for them: Count prizes of
// one kind. Cash is a fixed Amount, or, when Max is set, uniform in [Min, Max] cents.
type PrizeSpec struct {
	Kind    Kind        `json:"kind"`
	Amount  money.Cents `json:"amount,omitempty"`
	Min     money.Cents `json:"min,omitempty"`
	Max     money.Cents `json:"max,omitempty"`
	SKU     int64       `json:"sku,omitempty"`
	AwardID int         `json:"awardId,omitempty"`
	Count   int         `json:"count"`
}

// Ranged reports whether the spec is cash uniform in [Min, Max].
func (p PrizeSpec) Ranged() bool { return p.Kind == KindCash && p.Max > 0 }

// MaxCash is the most cash the spec can give: Count × Amount, or Count × Max.
func (p PrizeSpec) MaxCash() money.Cents {
	switch {
	case p.Kind != KindCash:
		return 0
	case p.Ranged():
		return money.Cents(p.Count) * p.Max
	}
	return money.Cents(p.Count) * p.Amount
}

// Prize is one armed prize of a session: a row of rain_prize and a member of the session's
// set in Redis. Index is unique within the session (0, 1, 2, … in arming order).
type Prize struct {
	Index   int         `json:"index"`
	Kind    Kind        `json:"kind"`
	Amount  money.Cents `json:"amount,omitempty"`
	SKU     int64       `json:"sku,omitempty"`
	AwardID int         `json:"awardId,omitempty"`
}

// Member is the prize's member of the session's set: "index:kind:value", unique by index.
func (p Prize) Member() string {
	var v int64
	switch p.Kind {
	case KindCash:
		v = int64(p.Amount)
	case KindSKU:
		v = p.SKU
	case KindAward:
		v = int64(p.AwardID)
	}
	return strconv.Itoa(p.Index) + ":" + p.Kind.code() + ":" + strconv.FormatInt(v, 10)
}

// ParseMember reads a set member written by Member.
func ParseMember(s string) (Prize, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Prize{}, fmt.Errorf("rain prize member %q: want index:kind:value", s)
	}
	idx, err := strconv.Atoi(parts[0])
	if err != nil || idx < 0 {
		return Prize{}, fmt.Errorf("rain prize member %q: bad index", s)
	}
	v, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || v <= 0 {
		return Prize{}, fmt.Errorf("rain prize member %q: bad value", s)
	}
	p := Prize{Index: idx}
	switch parts[1] {
	case "c":
		p.Kind, p.Amount = KindCash, money.Cents(v)
	case "s":
		p.Kind, p.SKU = KindSKU, v
	case "a":
		p.Kind, p.AwardID = KindAward, int(v)
	default:
		return Prize{}, fmt.Errorf("rain prize member %q: bad kind", s)
	}
	return p, nil
}

// State is rain_session.session_state.
type State string

// Session states.
const (
	// StateArmed is a session whose prizes are written and loaded: upcoming or live.
	StateArmed State = "armed"
	// StateEnded is a session past its end whose ledger is written.
	StateEnded State = "ended"
)

// Session is a rain session: its quota version in force (SeqNo), what was asked for and,
// once ended, its ledger.
type Session struct {
	ID    int64
	Title string
	// Quota is the version in force: plan, cap, and the SeqNo that names it.
	Quota Quota
	// Budget caps the cash of the prizes (fixed amounts plus count × max of the ranges);
	// zero means no cap.
	Budget money.Cents
	// Specs are the prize lines asked for, in order (those a quota change added included).
	Specs []PrizeSpec
	// Armed is how many prizes are armed (rain_prize rows): Quota.Total never exceeds it.
	Armed   int
	State   State
	Ledger  *Ledger // set once ended
	Created time.Time
}

// Tally counts prizes by kind.
type Tally struct {
	Count int         `json:"count"`
	Cash  money.Cents `json:"cash"`
	// CashCount, SKUs and Awards split Count: cash prizes, draws per SKU id, records per
	// award id.
	CashCount int           `json:"cashCount"`
	SKUs      map[int64]int `json:"skus,omitempty"`
	Awards    map[int]int   `json:"awards,omitempty"`
}

// Add counts p.
func (t *Tally) Add(p Prize) {
	t.Count++
	switch p.Kind {
	case KindCash:
		t.CashCount++
		t.Cash += p.Amount
	case KindSKU:
		if t.SKUs == nil {
			t.SKUs = map[int64]int{}
		}
		t.SKUs[p.SKU]++
	case KindAward:
		if t.Awards == nil {
			t.Awards = map[int]int{}
		}
		t.Awards[p.AwardID]++
	}
}

// Ledger is what a session did, written at its end: the prizes won, those released by the
// plan but never won, and those the plan never released (armed beyond the quota's total).
// Which of the prizes left count as released is decided by index order: the lowest
// indexes left are the released ones.
type Ledger struct {
	Granted    Tally     `json:"granted"`
	Unwon      Tally     `json:"unwon"`
	Unreleased Tally     `json:"unreleased"`
	EndedAt    time.Time `json:"endedAt"`
}

// Win is one prize a user won: the event a grab publishes, a row of rain_win in the
// winner's user database, and the credit, recharge or award record it leads to.
type Win struct {
	SessionID int64  `json:"sessionId"`
	UserID    string `json:"userId"`
	// N is the user's nth win in the session, from 1.
	N     int       `json:"n"`
	Prize Prize     `json:"prize"`
	Time  time.Time `json:"time"`
}

// MsgID is the win's idempotency key, its event's message id: session:user:n.
func (w Win) MsgID() string {
	return strconv.FormatInt(w.SessionID, 10) + ":" + w.UserID + ":" + strconv.Itoa(w.N)
}

// BusinessNo is the out_business_no of the credit order or recharge the win leads to, and
// the biz id of its award record: "rain_" session "_" user "_" n.
func (w Win) BusinessNo() string {
	return "rain_" + strconv.FormatInt(w.SessionID, 10) + "_" + w.UserID + "_" + strconv.Itoa(w.N)
}

// TopicWin is the topic of the win events.
const TopicWin = "rain_win"

// NameWin is the credit trade name of a cash win.
const NameWin = "红包雨"

// Status is a grab's outcome in the hot state.
type Status int

// Grab statuses.
const (
	// Won: a prize was taken for the user now.
	Won Status = iota + 1
	// Again: the user has a win whose event is not yet acknowledged; it is returned
	// again (not a new prize) so that the caller republishes it.
	Again
	// Paced: the plan allows no more prizes now (issued ≥ allowed).
	Paced
	// Empty: no prize is left in the pool.
	Empty
	// Capped: the user has won the cap.
	Capped
	// NotStarted and Ended: outside the session's time.
	NotStarted
	Ended
)

// Outcome is what the grab script did.
type Outcome struct {
	Status Status
	// Win is set for Won and Again.
	Win Win
	// Issued is the session's issued count after the script (for Paced: the count that
	// the allowance must exceed before the next win).
	Issued int
}

// HotSession is what the hot state needs of a session to load it.
type HotSession struct {
	ID         int64
	Start, End time.Time
	// Left are the prizes not yet won; Wins are the recorded wins (per-user counts and
	// the issued count are rebuilt from them).
	Left []Prize
	Wins []Win
}

// HotState is a session's hot counters.
type HotState struct {
	Issued int
	Left   int
	// PerSecond counts wins by the unix second of their grab.
	PerSecond map[int64]int
}

// Hot is the sessions' hot state in Redis: one set of prizes per session and one atomic
// script per grab. A session's keys share one hash tag. Every method but Load returns
// ErrUnavailable when the session is not loaded (unknown, or lost with Redis).
type Hot interface {
	// Load puts a session in place unless a live copy is there (a copy whose counts add
	// up: left + issued = armed), and returns whether it wrote it.
	Load(ctx context.Context, s HotSession) (bool, error)
	// AddPrizes adds armed prizes to a loaded session's pool.
	AddPrizes(ctx context.Context, sessionID int64, prizes []Prize) error
	// Grab runs the grab script: session open at now, user below cap, issued < allowed,
	// SPOP a prize, record user → prize, issued++ — or returns the user's unacknowledged
	// win (Again).
	Grab(ctx context.Context, sessionID int64, userID string, now time.Time, allowed, userCap int) (Outcome, error)
	// Acked forgets that the win's event is unacknowledged.
	Acked(ctx context.Context, w Win) error
	// State returns the session's counters.
	State(ctx context.Context, sessionID int64) (HotState, error)
	// Wins returns every win the hot state holds for the session.
	Wins(ctx context.Context, sessionID int64) ([]Win, error)
	// Close stops a session's grabs (its grab script answers Ended from now on) and
	// returns the prizes left in its pool.
	Close(ctx context.Context, sessionID int64) ([]Prize, error)
	// AddPending notes a win under its user until DonePending: the green channel.
	AddPending(ctx context.Context, w Win) error
	// Pending returns the user's noted wins.
	Pending(ctx context.Context, userID string) ([]Win, error)
	// DonePending forgets wins that are credited.
	DonePending(ctx context.Context, wins []Win) error
}

// Store keeps sessions and prizes in the config database and wins in the winners' user
// databases.
type Store interface {
	// CreateSession writes the session (its Quota.SeqNo is 1) and its prizes in one
	// transaction and returns the session's id.
	CreateSession(ctx context.Context, s Session, prizes []Prize) (int64, error)
	// Session returns a session; an unknown id wraps ErrNotFound.
	Session(ctx context.Context, id int64) (Session, error)
	// Sessions returns the sessions ending after t, by start time.
	Sessions(ctx context.Context, endAfter time.Time) ([]Session, error)
	// Prizes returns a session's armed prizes by index.
	Prizes(ctx context.Context, id int64) ([]Prize, error)
	// SetQuota writes q (q.SeqNo = prevSeqNo + 1) and adds prizes and specs in one
	// transaction, only while the session's SeqNo is still prevSeqNo (ErrConflict
	// otherwise).
	SetQuota(ctx context.Context, q Quota, prevSeqNo int64, specs []PrizeSpec, prizes []Prize) error
	// EndSession writes the ledger and marks the session ended, once (a second call
	// changes nothing).
	EndSession(ctx context.Context, id int64, l Ledger) error
	// ApplyWins records each win (rain_win) and credits it — cash to the credit account,
	// a SKU's recharge, or an award record with its distribution task — in the winner's
	// user database, idempotently by MsgID: a win applied before is nil again.
	ApplyWins(ctx context.Context, wins []Win) []error
	// Wins returns a user's recorded wins in a session (every session when sessionID is 0).
	Wins(ctx context.Context, userID string, sessionID int64) ([]Win, error)
	// SessionWins returns every recorded win of a session, across the user databases.
	SessionWins(ctx context.Context, sessionID int64) ([]Win, error)
}

// Reserver reserves a SKU's stock for the draws a session gives: the units are taken from
// the SKU's stock when the session is armed, all or none, and each win's recharge then
// takes none.
type Reserver interface {
	ReserveSKU(ctx context.Context, sku int64, units int64) error
}

// AwardChecker reports whether an award id exists (prizes naming an unknown award are
// refused at create).
type AwardChecker interface {
	AwardExists(ctx context.Context, awardID int) (bool, error)
}

// Publisher makes a win durable: it returns once the broker has stored the event.
type Publisher interface {
	PublishWin(ctx context.Context, w Win) error
}

// Drainer waits until every win event published so far has been applied.
type Drainer interface {
	WaitApplied(ctx context.Context) error
}

// QuotaBus carries quota versions between nodes: Put writes a version where every node's
// watcher reads it (the NATS KV bucket BIGMARKET_RAIN_QUOTA), Nodes reports the SeqNo each
// node has in force for a session.
type QuotaBus interface {
	Put(ctx context.Context, q Quota) error
	Nodes(ctx context.Context, sessionID int64) ([]NodeSeq, error)
}

// NodeSeq is the SeqNo a node has in force for a session.
type NodeSeq struct {
	NodeID string `json:"nodeId"`
	SeqNo  int64  `json:"seqNo"`
}
