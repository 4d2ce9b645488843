package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rain"
)

// maxRainTitle is the most characters of a session's title (rain_session.title).
const maxRainTitle = 64

// rainBatch bounds the rows of one multi-row statement of the rain store: a session may
// arm a million prizes, and a statement's placeholders and packet must stay small.
const rainBatch = 500

// RainStore keeps red packet rain sessions and their armed prizes in the config database
// and the wins in the winners' user databases, where each win is recorded and credited in
// one transaction. It implements rain.Store and rain.AwardChecker.
type RainStore struct {
	db     *DB
	users  *UserStore
	awards *AwardConfigs
	now    func() time.Time
}

var (
	_ rain.Store        = (*RainStore)(nil)
	_ rain.AwardChecker = (*RainStore)(nil)
)

// NewRainStore returns a RainStore on the migrated config database and the user store
// whose databases hold the wins (and whose committed tasks go to its outbox relay).
func NewRainStore(configDB *DB, users *UserStore) *RainStore {
	return &RainStore{db: configDB, users: users, awards: NewAwardConfigs(configDB), now: time.Now}
}

// milliTime is how the rain tables write their millisecond times: text in UTC with three
// decimals. MySQL's DATETIME(3) stores it exactly, and SQLite keeps it as written, while
// the SQLite driver's own form of a time.Time would drop the fraction. The form sorts as
// the instants do, so range conditions on it compare correctly on both dialects.
func milliTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }

// Column lists of the rain tables.
var (
	rainSessionColumns = []string{"title", "start_time", "end_time", "user_cap", "burst", "weights", "total", "armed",
		"budget", "prizes", "seq_no", "session_state", "create_time", "update_time"}
	rainPrizeColumns = []string{"session_id", "prize_index", "kind", "amount", "sku", "award_id", "create_time"}
	rainWinColumns   = []string{"session_id", "user_id", "win_no", "prize_index", "kind", "amount", "sku", "award_id",
		"win_time", "create_time", "update_time"}
)

const (
	rainSessionSelect = "SELECT id, title, start_time, end_time, user_cap, burst, weights, total, armed, budget, prizes," +
		" seq_no, session_state, ledger, create_time FROM rain_session"
	rainWinSelect = "SELECT session_id, user_id, win_no, prize_index, kind, amount, sku, award_id, win_time FROM rain_win"
)

// CreateSession implements rain.Store: the session (SeqNo 1, armed = len(prizes)) and its
// prizes in one transaction of the config database, the prizes in multi-row inserts.
func (s *RainStore) CreateSession(ctx context.Context, sess rain.Session, prizes []rain.Prize) (int64, error) {
	q := sess.Quota
	q.SessionID, q.SeqNo = 1, 1 // the id is not known yet; the rest of the version is checked now
	if err := q.Validate(); err != nil {
		return 0, fmt.Errorf("create rain session: %w", err)
	}
	if n := utf8.RuneCountInString(sess.Title); n > maxRainTitle {
		return 0, fmt.Errorf("create rain session: title of %d characters, at most %d: %w", n, maxRainTitle, rain.ErrInvalid)
	}
	if q.Total > len(prizes) {
		return 0, fmt.Errorf("create rain session: total %d beyond the %d prizes armed: %w", q.Total, len(prizes), rain.ErrInvalid)
	}
	for _, p := range prizes {
		if err := checkPrize(p); err != nil {
			return 0, fmt.Errorf("create rain session: %w", err)
		}
	}
	weights, err := weightsJSON(q.Weights)
	if err != nil {
		return 0, err
	}
	specs, err := json.Marshal(nonNil(sess.Specs))
	if err != nil {
		return 0, fmt.Errorf("create rain session: encode prizes: %w", err)
	}
	var budget any
	if sess.Budget > 0 {
		budget = sess.Budget.String()
	}
	now := sqlTime(s.now())
	var id int64
	err = retryTx(ctx, s.db.SQL, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, insertSQL("rain_session", rainSessionColumns, 1), sess.Title, milliTime(q.Start),
			milliTime(q.End), q.UserCap, q.Burst, weights, q.Total, len(prizes), budget, string(specs), 1,
			string(rain.StateArmed), now, now)
		if err != nil {
			return fmt.Errorf("insert rain session: %w", err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("insert rain session: %w", err)
		}
		return insertPrizes(ctx, tx, id, prizes, now)
	})
	if err != nil {
		return 0, fmt.Errorf("create rain session: %w", err)
	}
	return id, nil
}

// insertPrizes writes a session's armed prizes in statements of rainBatch rows. A prize
// index the session has already armed is a duplicate key, which the caller maps.
func insertPrizes(ctx context.Context, tx *sql.Tx, sessionID int64, prizes []rain.Prize, now time.Time) error {
	for start := 0; start < len(prizes); start += rainBatch {
		part := prizes[start:min(start+rainBatch, len(prizes))]
		args := make([]any, 0, len(part)*len(rainPrizeColumns))
		for _, p := range part {
			amount, sku, awardID := prizeColumns(p)
			args = append(args, sessionID, p.Index, string(p.Kind), amount, sku, awardID, now)
		}
		if _, err := tx.ExecContext(ctx, insertSQL("rain_prize", rainPrizeColumns, len(part)), args...); err != nil {
			if IsDuplicate(err) {
				return fmt.Errorf("insert rain prizes of session %d: an index is armed already: %w (%w)", sessionID, rain.ErrConflict, err)
			}
			return fmt.Errorf("insert rain prizes of session %d: %w", sessionID, err)
		}
	}
	return nil
}

// prizeColumns returns the amount, sku and award_id columns of a prize: only its kind's
// value is set, the others are zero.
func prizeColumns(p rain.Prize) (amount string, sku int64, awardID int) {
	amount = "0.00"
	switch p.Kind {
	case rain.KindCash:
		amount = p.Amount.String()
	case rain.KindSKU:
		sku = p.SKU
	case rain.KindAward:
		awardID = p.AwardID
	}
	return amount, sku, awardID
}

// checkPrize refuses a prize that cannot be a set member: an unknown kind, a negative
// index, a value that is not positive, or a value of another kind set.
func checkPrize(p rain.Prize) error {
	ok := p.Index >= 0
	switch p.Kind {
	case rain.KindCash:
		ok = ok && p.Amount > 0 && p.SKU == 0 && p.AwardID == 0
	case rain.KindSKU:
		ok = ok && p.SKU > 0 && p.Amount == 0 && p.AwardID == 0
	case rain.KindAward:
		ok = ok && p.AwardID > 0 && p.Amount == 0 && p.SKU == 0
	default:
		ok = false
	}
	if !ok {
		return fmt.Errorf("prize %+v: %w", p, rain.ErrInvalid)
	}
	return nil
}

func weightsJSON(w []int) (any, error) {
	if len(w) == 0 {
		return nil, nil // NULL: the linear plan
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode weights: %w", err)
	}
	return string(b), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Session implements rain.Store.
func (s *RainStore) Session(ctx context.Context, id int64) (rain.Session, error) {
	sess, err := scanSession(s.db.SQL.QueryRowContext(ctx, rainSessionSelect+" WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return rain.Session{}, fmt.Errorf("rain session %d: %w", id, rain.ErrNotFound)
	}
	if err != nil {
		return rain.Session{}, fmt.Errorf("rain session %d: %w", id, err)
	}
	return sess, nil
}

// Sessions implements rain.Store: the sessions whose end is after t, by start time.
func (s *RainStore) Sessions(ctx context.Context, endAfter time.Time) ([]rain.Session, error) {
	var out []rain.Session
	err := queryEach(ctx, s.db.SQL, rainSessionSelect+" WHERE end_time > ? ORDER BY start_time, id",
		[]any{milliTime(endAfter)}, func(rows *sql.Rows) error {
			sess, err := scanSession(rows)
			if err != nil {
				return err
			}
			out = append(out, sess)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("rain sessions ending after %s: %w", endAfter.UTC().Format(time.RFC3339), err)
	}
	return out, nil
}

// scanSession reads a row of rainSessionSelect.
func scanSession(row interface{ Scan(...any) error }) (rain.Session, error) {
	var (
		sess                    rain.Session
		start, end, created     NullTime
		weights, ledger         sql.NullString
		specs, state            string
		budget                  sql.Null[money.Cents]
		total, armed, ucap, bst int
	)
	if err := row.Scan(&sess.ID, &sess.Title, &start, &end, &ucap, &bst, &weights, &total, &armed, &budget, &specs,
		&sess.Quota.SeqNo, &state, &ledger, &created); err != nil {
		return rain.Session{}, err
	}
	sess.Quota.SessionID, sess.Quota.Start, sess.Quota.End = sess.ID, start.Time, end.Time
	sess.Quota.Total, sess.Quota.Burst, sess.Quota.UserCap = total, bst, ucap
	sess.Armed, sess.State, sess.Created, sess.Budget = armed, rain.State(state), created.Time, budget.V
	if weights.Valid && weights.String != "" {
		if err := json.Unmarshal([]byte(weights.String), &sess.Quota.Weights); err != nil {
			return rain.Session{}, fmt.Errorf("decode weights of session %d: %w", sess.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(specs), &sess.Specs); err != nil {
		return rain.Session{}, fmt.Errorf("decode prizes of session %d: %w", sess.ID, err)
	}
	if ledger.Valid && ledger.String != "" {
		sess.Ledger = new(rain.Ledger)
		if err := json.Unmarshal([]byte(ledger.String), sess.Ledger); err != nil {
			return rain.Session{}, fmt.Errorf("decode ledger of session %d: %w", sess.ID, err)
		}
	}
	return sess, nil
}

// Prizes implements rain.Store: the session's armed prizes by index.
func (s *RainStore) Prizes(ctx context.Context, id int64) ([]rain.Prize, error) {
	var out []rain.Prize
	err := queryEach(ctx, s.db.SQL, "SELECT prize_index, kind, amount, sku, award_id FROM rain_prize WHERE session_id = ? ORDER BY prize_index",
		[]any{id}, func(rows *sql.Rows) error {
			var (
				p    rain.Prize
				kind string
			)
			if err := rows.Scan(&p.Index, &kind, &p.Amount, &p.SKU, &p.AwardID); err != nil {
				return err
			}
			p.Kind = rain.Kind(kind)
			out = append(out, p)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("prizes of rain session %d: %w", id, err)
	}
	return out, nil
}

// SetQuota implements rain.Store: a compare-and-set on the session's seq_no. In one
// transaction the row is read locked, the new version written only while seq_no is still
// prevSeqNo (an UPDATE that must change one row), the specs appended and the prizes armed.
// A newer version in place, or prize indexes armed already, is rain.ErrConflict; an ended
// session rain.ErrEnded.
func (s *RainStore) SetQuota(ctx context.Context, q rain.Quota, prevSeqNo int64, specs []rain.PrizeSpec, prizes []rain.Prize) error {
	if err := q.Validate(); err != nil {
		return fmt.Errorf("set quota of rain session %d: %w", q.SessionID, err)
	}
	if q.SeqNo != prevSeqNo+1 {
		return fmt.Errorf("set quota of rain session %d: seqNo %d does not follow %d: %w", q.SessionID, q.SeqNo, prevSeqNo, rain.ErrInvalid)
	}
	for _, p := range prizes {
		if err := checkPrize(p); err != nil {
			return fmt.Errorf("set quota of rain session %d: %w", q.SessionID, err)
		}
	}
	weights, err := weightsJSON(q.Weights)
	if err != nil {
		return err
	}
	err = retryTx(ctx, s.db.SQL, func(tx *sql.Tx) error {
		var (
			seq        int64
			armed      int
			state, raw string
		)
		err := tx.QueryRowContext(ctx, "SELECT seq_no, armed, session_state, prizes FROM rain_session WHERE id = ?"+s.db.Dialect.ForUpdate(),
			q.SessionID).Scan(&seq, &armed, &state, &raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return rain.ErrNotFound
		case err != nil:
			return fmt.Errorf("lock session: %w", err)
		case seq != prevSeqNo:
			return fmt.Errorf("seqNo %d in force, not %d: %w", seq, prevSeqNo, rain.ErrConflict)
		case rain.State(state) == rain.StateEnded:
			return rain.ErrEnded
		}
		armed += len(prizes)
		if q.Total > armed {
			return fmt.Errorf("total %d beyond the %d prizes armed: %w", q.Total, armed, rain.ErrInvalid)
		}
		var all []rain.PrizeSpec
		if err := json.Unmarshal([]byte(raw), &all); err != nil {
			return fmt.Errorf("decode prizes: %w", err)
		}
		b, err := json.Marshal(append(nonNil(all), specs...))
		if err != nil {
			return fmt.Errorf("encode prizes: %w", err)
		}
		res, err := tx.ExecContext(ctx, "UPDATE rain_session SET seq_no = ?, start_time = ?, end_time = ?, user_cap = ?, burst = ?,"+
			" weights = ?, total = ?, armed = ?, prizes = ?, update_time = ? WHERE id = ? AND seq_no = ?",
			q.SeqNo, milliTime(q.Start), milliTime(q.End), q.UserCap, q.Burst, weights, q.Total, armed, string(b),
			sqlTime(s.now()), q.SessionID, prevSeqNo)
		if err != nil {
			return fmt.Errorf("update session: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("update session changed %d rows (%v): %w", n, err, rain.ErrConflict)
		}
		return insertPrizes(ctx, tx, q.SessionID, prizes, sqlTime(s.now()))
	})
	if err != nil {
		return fmt.Errorf("set quota %d of rain session %d: %w", q.SeqNo, q.SessionID, err)
	}
	return nil
}

// EndSession implements rain.Store: the ledger is written and the session marked ended
// only while it is not ended, so a second call changes nothing.
func (s *RainStore) EndSession(ctx context.Context, id int64, l rain.Ledger) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("end rain session %d: encode ledger: %w", id, err)
	}
	res, err := s.db.SQL.ExecContext(ctx, "UPDATE rain_session SET session_state = ?, ledger = ?, update_time = ? WHERE id = ? AND session_state <> ?",
		string(rain.StateEnded), string(b), sqlTime(s.now()), id, string(rain.StateEnded))
	if err != nil {
		return fmt.Errorf("end rain session %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("end rain session %d: %w", id, err)
	} else if n == 1 {
		return nil
	}
	if _, err := s.Session(ctx, id); err != nil { // not changed: ended before, or unknown
		return fmt.Errorf("end rain session: %w", err)
	}
	return nil
}

// AwardExists implements rain.AwardChecker from the award table (cached as distribution
// caches it).
func (s *RainStore) AwardExists(ctx context.Context, awardID int) (bool, error) {
	_, err := s.awards.Award(ctx, awardID)
	switch {
	case errors.Is(err, award.ErrUnknownAward):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// winKey is a win's identity, its event's message id.
type winKey struct {
	session int64
	user    string
	n       int
}

// prizeKey names one armed prize.
type prizeKey struct {
	session int64
	index   int
}

// winOrderID is the order id a win's award record or credit order carries, derived from
// the win so that it is the same at every try: tag and 30 hex digits of the SHA-256 of the
// win's message id, 32 characters as the order_id columns hold (the message id itself,
// with a user id of up to 32, does not fit).
func winOrderID(tag string, w rain.Win) string {
	sum := sha256.Sum256([]byte(w.MsgID()))
	return tag + hex.EncodeToString(sum[:15])
}

// Tags of winOrderID: an award record's order id, a cash win's credit order id.
const (
	winAwardTag  = "ra"
	winCreditTag = "rc"
)

// ApplyWins implements rain.Store. Each win is checked against its armed prize
// (rain_prize: an unknown prize, or one of another kind or value, is rain.ErrConflict),
// then the wins of each user database go in one transaction: the rain_win rows the batch
// names are read, a win recorded before with the same prize is done (nil), one recorded
// with another prize, or whose prize another win holds, is rain.ErrConflict, and the new
// ones are inserted with what they give — a cash win's forward credit order (trade name
// rain.NameWin, out_business_no Win.BusinessNo) applied to the account through
// ApplyCredit's code, an award win's award record (activity 0, strategy 0, state create,
// the award's description as its title) with its send_award task; a SKU win is only its
// row, its recharge being activity.Service.GrantReserved's, made before. Committed tasks
// go to the user store's outbox relay.
func (s *RainStore) ApplyWins(ctx context.Context, wins []rain.Win) []error {
	errs := make([]error, len(wins))
	var valid []int
	for i, w := range wins {
		if err := checkWin(w); err != nil {
			errs[i] = err
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return errs
	}
	armed, err := s.armedPrizes(ctx, wins, valid)
	if err != nil {
		for _, i := range valid {
			errs[i] = fmt.Errorf("apply rain win %s: %w", wins[i].MsgID(), err)
		}
		return errs
	}
	titles := map[int]string{}
	byDB := map[int][]int{}
	for _, i := range valid {
		w := wins[i]
		p, ok := armed[prizeKey{w.SessionID, w.Prize.Index}]
		if !ok || p != w.Prize {
			errs[i] = fmt.Errorf("rain win %s of prize %+v: the session armed %+v: %w", w.MsgID(), w.Prize, p, rain.ErrConflict)
			continue
		}
		if w.Prize.Kind == rain.KindAward {
			if _, ok := titles[p.AwardID]; !ok {
				a, err := s.awards.Award(ctx, p.AwardID)
				if err != nil && !errors.Is(err, award.ErrUnknownAward) {
					errs[i] = fmt.Errorf("apply rain win %s: %w", w.MsgID(), err)
					continue
				}
				// An award removed since the session was armed is still recorded: the win
				// was answered, and distribution dead-letters what it cannot hand over.
				titles[p.AwardID] = a.Desc
			}
		}
		dbi := s.users.router.Route(w.UserID).DB
		byDB[dbi] = append(byDB[dbi], i)
	}
	var wg sync.WaitGroup
	for dbi, idx := range byDB {
		wg.Go(func() { s.applyWins(ctx, dbi, wins, idx, titles, errs) })
	}
	wg.Wait()
	return errs
}

// checkWin refuses a win no store could record: a bad user id, session or number, a
// prize that is no set member, no time.
func checkWin(w rain.Win) error {
	if err := activity.CheckUserID(w.UserID); err != nil {
		return fmt.Errorf("rain win %s: %w: %w", w.MsgID(), rain.ErrInvalid, err)
	}
	if w.SessionID <= 0 || w.N < 1 || w.Time.IsZero() {
		return fmt.Errorf("rain win %s at %s: %w", w.MsgID(), w.Time, rain.ErrInvalid)
	}
	if err := checkPrize(w.Prize); err != nil {
		return fmt.Errorf("rain win %s: %w", w.MsgID(), err)
	}
	return nil
}

// armedPrizes reads the rain_prize rows the wins idx name.
func (s *RainStore) armedPrizes(ctx context.Context, wins []rain.Win, idx []int) (map[prizeKey]rain.Prize, error) {
	armed := map[prizeKey]rain.Prize{}
	for start := 0; start < len(idx); start += rainBatch {
		part := idx[start:min(start+rainBatch, len(idx))]
		args := make([]any, 0, 2*len(part))
		for _, i := range part {
			args = append(args, wins[i].SessionID, wins[i].Prize.Index)
		}
		err := queryEach(ctx, s.db.SQL, "SELECT session_id, prize_index, kind, amount, sku, award_id FROM rain_prize"+
			" WHERE (session_id, prize_index) IN ("+Placeholders(len(part), 2)+")", args, func(rows *sql.Rows) error {
			var (
				k    prizeKey
				p    rain.Prize
				kind string
			)
			if err := rows.Scan(&k.session, &k.index, &kind, &p.Amount, &p.SKU, &p.AwardID); err != nil {
				return err
			}
			p.Index, p.Kind = k.index, rain.Kind(kind)
			armed[k] = p
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read armed rain prizes: %w", err)
		}
	}
	return armed, nil
}

// applyWins runs the wins idx of database dbi in one transaction; when it fails as a
// whole, each win runs alone, so a bad one fails alone.
func (s *RainStore) applyWins(ctx context.Context, dbi int, wins []rain.Win, idx []int, titles map[int]string, errs []error) {
	var committed []outbox.Task
	err := s.users.inGroupTx(ctx, s.users.dbs[dbi], func(tx *sql.Tx, multi bool) error {
		var err error
		committed, err = s.winTx(ctx, tx, multi, dbi, wins, idx, titles, errs)
		return err
	})
	if err != nil && len(idx) > 1 {
		for _, i := range idx {
			s.applyWins(ctx, dbi, wins, []int{i}, titles, errs)
		}
		return
	}
	if err != nil {
		errs[idx[0]] = fmt.Errorf("apply rain win %s: %w", wins[idx[0]].MsgID(), err)
		return
	}
	s.users.tasksCommitted(committed)
}

// winTx records wins idx in tx and returns the tasks it wrote. The reads find what the
// database holds of the batch's wins and prizes; each win is then decided in order
// against that and the wins before it, so that a repeat within the batch is a repeat and
// two wins of one prize conflict. A concurrent transaction inserting the same win first
// makes the insert a duplicate, which retries the transaction, whose reads then see it.
func (s *RainStore) winTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, wins []rain.Win, idx []int,
	titles map[int]string, errs []error) ([]outbox.Task, error) {
	byKey := map[winKey]rain.Prize{}
	byPrize := map[prizeKey]winKey{}
	var reads script
	for start := 0; start < len(idx); start += rainBatch {
		part := idx[start:min(start+rainBatch, len(idx))]
		keys := make([]any, 0, 3*len(part))
		prizes := make([]any, 0, 2*len(part))
		for _, i := range part {
			w := wins[i]
			keys = append(keys, w.SessionID, w.UserID, w.N)
			prizes = append(prizes, w.SessionID, w.Prize.Index)
		}
		record := func(rows *sql.Rows) error {
			w, err := scanWin(rows)
			if err != nil {
				return err
			}
			k := winKey{w.SessionID, w.UserID, w.N}
			byKey[k] = w.Prize
			byPrize[prizeKey{w.SessionID, w.Prize.Index}] = k
			return nil
		}
		reads.read("read rain wins", rainWinSelect+" WHERE (session_id, user_id, win_no) IN ("+Placeholders(len(part), 3)+")", keys, record)
		reads.read("read won rain prizes", rainWinSelect+" WHERE (session_id, prize_index) IN ("+Placeholders(len(part), 2)+")", prizes, record)
	}
	if err := reads.run(ctx, tx, multi); err != nil {
		return nil, err
	}

	now := sqlTime(s.now())
	var (
		rows     [][]any
		records  = map[int][][]any{}
		tasks    []outbox.Task
		credits  []*crediting
		creditOf = map[*crediting]int{}
	)
	for _, i := range idx {
		errs[i] = nil
		w := wins[i]
		k, pk := winKey{w.SessionID, w.UserID, w.N}, prizeKey{w.SessionID, w.Prize.Index}
		if p, ok := byKey[k]; ok {
			if p != w.Prize {
				errs[i] = fmt.Errorf("rain win %s of prize %+v is recorded with prize %+v: %w", w.MsgID(), w.Prize, p, rain.ErrConflict)
			}
			continue // recorded before: a redelivery
		}
		if other, ok := byPrize[pk]; ok {
			errs[i] = fmt.Errorf("rain win %s of prize %d: the prize is won by %s's win %d: %w", w.MsgID(), w.Prize.Index, other.user, other.n, rain.ErrConflict)
			continue
		}
		byKey[k], byPrize[pk] = w.Prize, k
		amount, sku, awardID := prizeColumns(w.Prize)
		rows = append(rows, []any{w.SessionID, w.UserID, w.N, w.Prize.Index, string(w.Prize.Kind), amount, sku, awardID,
			milliTime(w.Time), now, now})
		r := s.users.router.Route(w.UserID)
		switch w.Prize.Kind {
		case rain.KindCash:
			o := &credit.Order{UserID: w.UserID, OrderID: winOrderID(winCreditTag, w), Name: rain.NameWin, Type: credit.Forward,
				Amount: w.Prize.Amount, OutBusinessNo: w.BusinessNo()}
			c := &crediting{change: credit.Change{UserID: w.UserID, Order: o}, table: r.Table}
			credits = append(credits, c)
			creditOf[c] = i
		case rain.KindAward:
			rec := award.Record{UserID: w.UserID, OrderID: winOrderID(winAwardTag, w), AwardID: w.Prize.AwardID,
				AwardTitle: titles[w.Prize.AwardID], AwardTime: w.Time, State: award.StateCreate}
			records[r.Table] = append(records[r.Table], []any{rec.UserID, rec.ActivityID, rec.StrategyID, rec.OrderID, rec.AwardID,
				rec.AwardTitle, sqlTime(rec.AwardTime), string(rec.State), now})
			// No rule value: the award's own config is what distribution hands over.
			tasks = append(tasks, award.NewSendAwardTask(rec, ""))
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	var writes script
	for start := 0; start < len(rows); start += rainBatch {
		part := rows[start:min(start+rainBatch, len(rows))]
		writes.write("insert rain wins", insertSQL("rain_win", rainWinColumns, len(part)), flatten(part), len(part),
			func(err error) error { return insertError("rain wins", err) })
	}
	for table := range s.users.router.Tables {
		if recs := records[table]; len(recs) > 0 {
			writes.write("insert rain award records", insertSQL("user_award_record"+TableSuffix(table), awardRecordInsertColumns, len(recs)),
				flatten(recs), len(recs), func(err error) error { return insertError("rain award records", err) })
		}
	}
	writeTasks(&writes, tasks, now)
	if err := writes.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	if len(credits) > 0 {
		more, err := s.users.creditTx(ctx, tx, multi, dbi, credits)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, more...)
		for _, c := range credits {
			// A business number credited already is this win's credit (the number is
			// the win's); anything else must not leave the win recorded uncredited.
			if c.err != nil && !errors.Is(c.err, credit.ErrDuplicate) {
				return nil, fmt.Errorf("credit rain win %s: %w", wins[creditOf[c]].MsgID(), c.err)
			}
		}
	}
	return tasks, nil
}

// scanWin reads a row of rainWinSelect.
func scanWin(rows *sql.Rows) (rain.Win, error) {
	var (
		w    rain.Win
		kind string
		at   NullTime
	)
	if err := rows.Scan(&w.SessionID, &w.UserID, &w.N, &w.Prize.Index, &kind, &w.Prize.Amount, &w.Prize.SKU,
		&w.Prize.AwardID, &at); err != nil {
		return rain.Win{}, err
	}
	w.Prize.Kind, w.Time = rain.Kind(kind), at.Time
	return w, nil
}

// Wins implements rain.Store: the user's recorded wins, by session and number.
func (s *RainStore) Wins(ctx context.Context, userID string, sessionID int64) ([]rain.Win, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return nil, fmt.Errorf("rain wins: %w: %w", rain.ErrInvalid, err)
	}
	query, args := rainWinSelect+" WHERE user_id = ?", []any{userID}
	if sessionID != 0 {
		query, args = query+" AND session_id = ?", append(args, sessionID)
	}
	var out []rain.Win
	db := s.users.dbs[s.users.router.Route(userID).DB]
	err := queryEach(ctx, db.SQL, query+" ORDER BY session_id, win_no", args, func(rows *sql.Rows) error {
		w, err := scanWin(rows)
		out = append(out, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rain wins of %s in session %d: %w", userID, sessionID, err)
	}
	return out, nil
}

// SessionWins implements rain.Store: every recorded win of the session, database by
// database, each database's by user and number.
func (s *RainStore) SessionWins(ctx context.Context, sessionID int64) ([]rain.Win, error) {
	var out []rain.Win
	for dbi, db := range s.users.dbs {
		err := queryEach(ctx, db.SQL, rainWinSelect+" WHERE session_id = ? ORDER BY user_id, win_no", []any{sessionID},
			func(rows *sql.Rows) error {
				w, err := scanWin(rows)
				out = append(out, w)
				return err
			})
		if err != nil {
			return nil, fmt.Errorf("wins of rain session %d in database %d: %w", sessionID, dbi, err)
		}
	}
	return out, nil
}
