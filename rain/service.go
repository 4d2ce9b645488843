package rain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/internal/rebuild"
	"github.com/bigmarket/bigmarket/internal/seeded"
	"github.com/bigmarket/bigmarket/money"
	"golang.org/x/sync/singleflight"
)

// SKUGranter recharges a SKU's draws for a win without taking stock: the unit was
// reserved when the prize was armed. A repeated outBusinessNo is nil.
type SKUGranter interface {
	GrantReserved(ctx context.Context, userID string, sku int64, outBusinessNo string) error
}

// MaxTitle bounds a session's title, in characters.
const MaxTitle = 64

// Options configure a Service. Store, Hot, Events and Agent are required; Drain is needed
// to rebuild a session Redis lost; Bus spreads quota versions to the other nodes (nil on
// a single node); Reserver, Awards and SKUs are needed by sessions with those prizes.
type Options struct {
	Store    Store
	Hot      Hot
	Events   Publisher
	Drain    Drainer
	Bus      QuotaBus
	Agent    *Agent
	Reserver Reserver
	Awards   AwardChecker
	SKUs     SKUGranter
	Now      func() time.Time
	// Rand returns the randomness of one arming; nil seeds a fresh generator from
	// crypto/rand each time.
	Rand   func() *rand.Rand
	Logger *slog.Logger
	// PublishTimeout bounds how long a grab waits for the broker to store its win
	// (default 2s); past it the grab answers ErrUnavailable and the user's retry
	// publishes the same win again.
	PublishTimeout time.Duration
	// RecoverGrace is how long a rebuild waits before it drains the win events, so that
	// grabs in flight when Redis lost the session have published or failed (default and
	// minimum PublishTimeout plus a second).
	RecoverGrace time.Duration
	// RecoverTimeout bounds a rebuild (default RecoverGrace + 12s); a grab waits for it at
	// most PublishTimeout and answers ErrUnavailable meanwhile.
	RecoverTimeout time.Duration
}

// Service runs rain sessions: creates and arms them, changes their quota, answers grabs
// from the quota version in force and the hot state, credits wins and ends sessions.
type Service struct {
	opts    Options
	loads   singleflight.Group // one Store read per unknown session at a time on this node
	rebuild rebuild.Group      // one rebuild per session at a time on this node
	local   sync.Map           // int64 → *local
}

// local is what this node learned about a session from its grabs, so that misses are
// answered without Redis. Each note names the SeqNo it was learned under: a new quota
// version may release more, so a swap makes the notes stale.
type local struct {
	paced atomic.Pointer[pacedNote]
	// empty is the SeqNo under which the pool was found empty (0: never).
	empty atomic.Int64
	// retry holds the users whose win this node failed to make durable: their next tap
	// must reach Redis (which returns the win again) even when the pool is paced out or
	// empty, or they would be answered a miss while a win of theirs waits.
	retry sync.Map // user id → struct{}
	// issued is the issued count of the latest grab reply under a version, and inflight
	// the grabs on their way to Redis: together they hold the grabs in flight to the
	// prizes the plan has released for them (see admit).
	issued   atomic.Pointer[issuedNote]
	inflight atomic.Int64
}

// issuedNote is the issued count a grab reply reported under quota version seq.
type issuedNote struct {
	seq    int64
	issued int
}

// admit lets a grab go to Redis while fewer grabs are in flight there than prizes may be
// left for them: the plan's allowance now less the issued count of the latest reply, and
// at least one, so that a wrong count is always put right by a reply. That count lags
// the truth (other nodes' wins, replies still on their way), so the room is not smaller
// than the prizes really released and not taken: a grab turned away finds every
// released prize already sought by a grab in flight, which is a miss, as Paced is. (A
// reply that is older than it looks only lowers the count, which admits more; one from
// before the hot state was rebuilt with fewer issued holds grabs to one slot at worst,
// until the next reply.) Without the hold, every tap between a release and the Paced
// reply that notes the next one goes to Redis; under load that reply takes longer than
// the plan's step between releases, and nearly every tap did. The caller gives the slot
// back with done.
func (l *local) admit(q *Quota, now time.Time) bool {
	issued := 0
	if n := l.issued.Load(); n != nil && n.seq == q.SeqNo {
		issued = n.issued
	}
	room := max(q.Allowed(now)-issued, 1)
	if l.inflight.Add(1) > int64(room) {
		l.inflight.Add(-1)
		return false
	}
	return true
}

// done gives back a slot of admit and, when the grab was replied, keeps the reply's
// issued count.
func (l *local) done(seq int64, issued int, replied bool) {
	l.inflight.Add(-1)
	if replied {
		l.issued.Store(&issuedNote{seq: seq, issued: issued})
	}
}

// pacedNote says that under quota version seq no prize is released before until.
type pacedNote struct {
	seq   int64
	until time.Time
}

// NewService returns a Service with the defaults filled in.
func NewService(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = seeded.Rand
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Agent == nil {
		opts.Agent = &Agent{}
	}
	opts.PublishTimeout, opts.RecoverGrace, opts.RecoverTimeout = rebuild.Timing(opts.PublishTimeout, opts.RecoverGrace, opts.RecoverTimeout)
	return &Service{opts: opts}
}

// checkUser applies the house identifier rule (ident) to a user id.
func checkUser(userID string) error {
	if err := ident.Check(userID, ident.MaxUserID); err != nil {
		return fmt.Errorf("user id %w: %w", err, ErrInvalid)
	}
	return nil
}

// CreateRequest asks for a session. Burst nil means DefaultBurst of the prizes; Budget 0
// means no cap on the cash.
type CreateRequest struct {
	Title      string
	Start, End time.Time
	UserCap    int
	Burst      *int
	Weights    []int
	Budget     money.Cents
	Prizes     []PrizeSpec
}

// Create checks the request, arms the session's prizes and writes it, then loads it into
// the hot state and puts its first quota version in force. The SKU units are reserved
// last, after every check, so a refused request takes none; a write that fails after
// them leaves them taken (undersold, logged), never given twice.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Session, error) {
	now := s.opts.Now()
	// Milliseconds, as the store keeps them and the wire carries them: every node must
	// compute allowed(t) from the same instants.
	start, end := req.Start.Truncate(time.Millisecond), req.End.Truncate(time.Millisecond)
	title := strings.TrimSpace(req.Title)
	switch n := utf8.RuneCountInString(title); {
	case !utf8.ValidString(req.Title) || n < 1 || n > MaxTitle:
		return Session{}, fmt.Errorf("title: want 1 to %d characters: %w", MaxTitle, ErrInvalid)
	case req.Start.IsZero() || !start.Before(end):
		return Session{}, fmt.Errorf("start %s and end %s: the end must follow the start: %w", start, end, ErrInvalid)
	case !end.After(now):
		return Session{}, fmt.Errorf("end %s: already past: %w", end, ErrInvalid)
	case end.Sub(start) > MaxDuration:
		return Session{}, fmt.Errorf("session of %s: at most %s: %w", end.Sub(start), MaxDuration, ErrInvalid)
	case req.Budget < 0 || req.Budget > MaxAmount:
		return Session{}, fmt.Errorf("budget %s: want 0 to %s: %w", req.Budget, MaxAmount, ErrInvalid)
	case len(req.Prizes) == 0:
		return Session{}, fmt.Errorf("no prizes: %w", ErrInvalid)
	}
	total, cash, err := checkSpecs(req.Prizes, MaxPrizes)
	if err != nil {
		return Session{}, err
	}
	if req.Budget > 0 && cash > req.Budget {
		return Session{}, fmt.Errorf("prizes give up to %s of cash, over the budget %s: %w", cash, req.Budget, ErrInvalid)
	}
	burst := DefaultBurst(total)
	if req.Burst != nil {
		burst = *req.Burst
	}
	q := Quota{SessionID: 1, SeqNo: 1, Start: start, End: end, Total: total, Burst: burst, UserCap: req.UserCap}
	if len(req.Weights) > 0 {
		q.Weights = slices.Clone(req.Weights)
	}
	// The id is the store's; any positive one validates the rest of the version now.
	if err := q.Validate(); err != nil {
		return Session{}, err
	}
	if err := s.checkAwards(ctx, req.Prizes); err != nil {
		return Session{}, err
	}
	specs := slices.Clone(req.Prizes)
	prizes := Arm(specs, 0, s.opts.Rand())
	reserved, err := s.reserve(ctx, specs)
	if err != nil {
		return Session{}, err
	}
	sess := Session{
		Title: title, Quota: q, Budget: req.Budget, Specs: specs, Armed: len(prizes),
		State: StateArmed, Created: now,
	}
	id, err := s.opts.Store.CreateSession(ctx, sess, prizes)
	if err != nil {
		if reserved {
			s.opts.Logger.Error("rain session not written after its sku units were reserved: they stay taken (undersold)", "title", title, "err", err)
		}
		return Session{}, fmt.Errorf("create rain session: %w", err)
	}
	sess.ID, sess.Quota.SessionID = id, id
	if _, err := s.opts.Hot.Load(ctx, HotSession{ID: id, Start: start, End: end, Left: prizes}); err != nil {
		// The session is written: its first grab finds it missing and rebuilds it.
		s.opts.Logger.Warn("rain session written but not loaded; its first grab loads it", "session_id", id, "err", err)
	}
	s.spread(ctx, sess.Quota)
	return sess, nil
}

// checkAwards refuses prizes that name an unknown award.
func (s *Service) checkAwards(ctx context.Context, specs []PrizeSpec) error {
	seen := map[int]bool{}
	for _, p := range specs {
		if p.Kind != KindAward || seen[p.AwardID] {
			continue
		}
		seen[p.AwardID] = true
		if s.opts.Awards == nil {
			return fmt.Errorf("award prizes: no award checker configured: %w", ErrInvalid)
		}
		ok, err := s.opts.Awards.AwardExists(ctx, p.AwardID)
		if err != nil {
			return fmt.Errorf("check award %d: %w", p.AwardID, err)
		}
		if !ok {
			return fmt.Errorf("award %d: %w", p.AwardID, ErrInvalid)
		}
	}
	return nil
}

// reserve takes the SKU units the prize lines give, one call per SKU in the order they
// first appear. It returns whether anything was reserved; a failure after a success
// leaves the earlier units taken (logged): undersold, never oversold.
func (s *Service) reserve(ctx context.Context, specs []PrizeSpec) (bool, error) {
	var order []int64
	units := map[int64]int64{}
	for _, p := range specs {
		if p.Kind != KindSKU {
			continue
		}
		if _, ok := units[p.SKU]; !ok {
			order = append(order, p.SKU)
		}
		units[p.SKU] += int64(p.Count)
	}
	if len(order) > 0 && s.opts.Reserver == nil {
		return false, fmt.Errorf("sku prizes: no sku reserver configured: %w", ErrInvalid)
	}
	for i, sku := range order {
		if err := s.opts.Reserver.ReserveSKU(ctx, sku, units[sku]); err != nil {
			if i > 0 {
				s.opts.Logger.Error("rain sku reservation failed after others succeeded: those stay taken (undersold)", "sku", sku, "reserved_skus", order[:i], "err", err)
			}
			return i > 0, fmt.Errorf("reserve %d units of sku %d: %w", units[sku], sku, err)
		}
	}
	return len(order) > 0, nil
}

// spread puts a quota version in force on this node and hands it to the other nodes.
// A failure is logged: Refresh, run on every node, converges from the Store.
func (s *Service) spread(ctx context.Context, q Quota) {
	if _, err := s.opts.Agent.Offer(q); err != nil {
		s.opts.Logger.Error("rain quota refused by the agent", "session_id", q.SessionID, "seq_no", q.SeqNo, "err", err)
	}
	if s.opts.Bus == nil {
		return
	}
	if err := s.opts.Bus.Put(ctx, q); err != nil {
		s.opts.Logger.Warn("rain quota not put on the bus; the nodes' refresh picks it up", "session_id", q.SessionID, "seq_no", q.SeqNo, "err", err)
	}
}

// QuotaRequest changes a session's quota: nil fields keep their value. Prizes are armed
// and added to the pool; Total grows by their count unless Total is given.
type QuotaRequest struct {
	UserCap, Burst, Total *int
	Weights               *[]int
	End                   *time.Time
	Prizes                []PrizeSpec
}

// endSetter is a hot state that can move a loaded session's end. Extending a session
// needs it: the grab script refuses grabs past the end it was loaded with.
type endSetter interface {
	SetEnd(ctx context.Context, sessionID int64, end time.Time) error
}

// UpdateQuota writes the next quota version of a live or upcoming session and puts it in
// force everywhere. The version is checked whole (plan, cap, burst, added prizes, budget)
// and never allows fewer prizes than are already issued. It is written only over the
// version it was built from; when another change won the race it is rebuilt once from
// the newer one.
func (s *Service) UpdateQuota(ctx context.Context, sessionID int64, req QuotaRequest) (Quota, error) {
	if _, _, err := checkSpecs(req.Prizes, MaxPrizes); err != nil {
		return Quota{}, err
	}
	if err := s.checkAwards(ctx, req.Prizes); err != nil {
		return Quota{}, err
	}
	specs := slices.Clone(req.Prizes)
	// Armed once: a retry re-indexes the same prizes after the newer version's.
	added := Arm(specs, 0, s.opts.Rand())
	reserved := false
	for attempt := 0; ; attempt++ {
		sess, err := s.opts.Store.Session(ctx, sessionID)
		if err != nil {
			return Quota{}, err
		}
		q, err := s.nextQuota(ctx, sess, req)
		if err != nil {
			if reserved {
				s.opts.Logger.Error("rain quota refused after its sku units were reserved: they stay taken (undersold)", "session_id", sessionID, "err", err)
			}
			return Quota{}, err
		}
		for i := range added {
			added[i].Index = sess.Armed + i
		}
		if !reserved {
			if reserved, err = s.reserve(ctx, specs); err != nil {
				return Quota{}, err
			}
		}
		err = s.opts.Store.SetQuota(ctx, q, sess.Quota.SeqNo, specs, added)
		if errors.Is(err, ErrConflict) && attempt == 0 {
			continue
		}
		if err != nil {
			if reserved {
				s.opts.Logger.Error("rain quota not written after its sku units were reserved: they stay taken (undersold)", "session_id", sessionID, "err", err)
			}
			return Quota{}, fmt.Errorf("set rain quota of session %d: %w", sessionID, err)
		}
		// The prizes go into the pool before any node may release them.
		if len(added) > 0 {
			if err := s.opts.Hot.AddPrizes(ctx, sessionID, added); err != nil && !errors.Is(err, ErrUnavailable) {
				// A session Redis lost is rebuilt with them from the Store.
				s.opts.Logger.Error("rain prizes written but not added to the pool", "session_id", sessionID, "prizes", len(added), "err", err)
			}
		}
		if req.End != nil && !q.End.Equal(sess.Quota.End) {
			if es, ok := s.opts.Hot.(endSetter); ok {
				if err := es.SetEnd(ctx, sessionID, q.End); err != nil && !errors.Is(err, ErrUnavailable) {
					s.opts.Logger.Error("rain session end written but not moved in the hot state", "session_id", sessionID, "err", err)
				}
			}
		}
		s.spread(ctx, q)
		return q, nil
	}
}

// nextQuota builds and checks the version that follows the session's one in force.
func (s *Service) nextQuota(ctx context.Context, sess Session, req QuotaRequest) (Quota, error) {
	now := s.opts.Now()
	cur := sess.Quota
	if cur.SessionID == 0 {
		cur.SessionID = sess.ID
	}
	if sess.State != StateArmed || !now.Before(cur.End) {
		return Quota{}, fmt.Errorf("rain session %d: %w", sess.ID, ErrEnded)
	}
	addCount, _, err := checkSpecs(req.Prizes, MaxPrizes-sess.Armed)
	if err != nil {
		return Quota{}, err
	}
	if len(req.Prizes) > 0 && sess.Budget > 0 {
		_, cash, _ := checkSpecs(sess.Specs, MaxPrizes)
		for _, p := range req.Prizes {
			cash += p.MaxCash()
		}
		if cash > sess.Budget {
			return Quota{}, fmt.Errorf("prizes would give up to %s of cash, over the budget %s: %w", cash, sess.Budget, ErrInvalid)
		}
	}
	// A fresh value: no derived table of the current version may ride along.
	q := Quota{
		SessionID: cur.SessionID, SeqNo: cur.SeqNo + 1, Start: cur.Start, End: cur.End, Total: cur.Total,
		Burst: cur.Burst, Weights: slices.Clone(cur.Weights), UserCap: cur.UserCap,
	}
	if req.UserCap != nil {
		q.UserCap = *req.UserCap
	}
	if req.Burst != nil {
		q.Burst = *req.Burst
	}
	if req.Weights != nil {
		q.Weights = nil
		if len(*req.Weights) > 0 {
			q.Weights = slices.Clone(*req.Weights)
		}
	}
	if req.End != nil {
		end := req.End.Truncate(time.Millisecond)
		if !end.After(now) {
			return Quota{}, fmt.Errorf("end %s: already past: %w", end, ErrInvalid)
		}
		if end.After(cur.End) {
			if _, ok := s.opts.Hot.(endSetter); !ok {
				return Quota{}, fmt.Errorf("end %s: this hot state cannot extend a session past %s: %w", end, cur.End, ErrInvalid)
			}
		}
		q.End = end
	}
	q.Total += addCount
	if req.Total != nil {
		q.Total = *req.Total
	}
	if q.Total > sess.Armed+addCount {
		return Quota{}, fmt.Errorf("total %d: only %d prizes armed: %w", q.Total, sess.Armed+addCount, ErrInvalid)
	}
	if err := q.Validate(); err != nil {
		return Quota{}, err
	}
	issued, err := s.issued(ctx, sess.ID)
	if err != nil {
		return Quota{}, err
	}
	if q.Total < issued {
		return Quota{}, fmt.Errorf("total %d: %d prizes already issued: %w", q.Total, issued, ErrInvalid)
	}
	return q, nil
}

// issued is how many prizes a session has issued: the hot count, or, when Redis lost the
// session, the recorded wins once the wins in flight are applied.
func (s *Service) issued(ctx context.Context, sessionID int64) (int, error) {
	st, err := s.opts.Hot.State(ctx, sessionID)
	if err == nil {
		return st.Issued, nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return 0, fmt.Errorf("issued prizes of rain session %d: %w", sessionID, err)
	}
	if err := s.drain(ctx); err != nil {
		return 0, fmt.Errorf("issued prizes of rain session %d: %w (%w)", sessionID, ErrUnavailable, err)
	}
	wins, err := s.opts.Store.SessionWins(ctx, sessionID)
	if err != nil {
		return 0, fmt.Errorf("issued prizes of rain session %d: %w", sessionID, err)
	}
	return len(wins), nil
}

// GrabResult is a grab's answer: a win, or a miss (Won false).
type GrabResult struct {
	Won bool
	Win Win
}

// Grab is one tap of a user on a session. Misses are cheap: the times and what this node
// learned from earlier taps (the plan paced out until an instant, the pool empty) answer
// without Redis. Otherwise the hot state's script decides, and a win is made durable
// (published) before it is answered; when the broker does not store it in time the grab
// answers ErrUnavailable, and the user's next tap gets the same win back and publishes it
// again (the message id drops the repeat).
func (s *Service) Grab(ctx context.Context, userID string, sessionID int64) (GrabResult, error) {
	return s.grab(ctx, userID, sessionID, false)
}

// GrabRetry is the tap of a client repeating a tap that was answered ErrUnavailable: it
// always asks the hot state, which returns the user's win whose event is not yet durable,
// whichever node answered the first tap. (A node remembers only its own such users; the
// others would answer a miss from what they learned, without Redis.) Misses cost a round
// trip here, so clients set it only after a retryable answer.
func (s *Service) GrabRetry(ctx context.Context, userID string, sessionID int64) (GrabResult, error) {
	return s.grab(ctx, userID, sessionID, true)
}

func (s *Service) grab(ctx context.Context, userID string, sessionID int64, retrying bool) (GrabResult, error) {
	if err := checkUser(userID); err != nil {
		return GrabResult{}, err
	}
	q, err := s.quota(ctx, sessionID)
	if err != nil {
		return GrabResult{}, err
	}
	now := s.opts.Now()
	switch {
	case now.Before(q.Start):
		return GrabResult{}, fmt.Errorf("rain session %d: %w", sessionID, ErrNotStarted)
	case !now.Before(q.End):
		return GrabResult{}, fmt.Errorf("rain session %d: %w", sessionID, ErrEnded)
	}
	l := s.localOf(sessionID)
	held := false
	if _, retry := l.retry.Load(userID); !retry && !retrying {
		if l.empty.Load() == q.SeqNo {
			return GrabResult{}, fmt.Errorf("rain session %d: %w", sessionID, ErrEnded)
		}
		if p := l.paced.Load(); p != nil && p.seq == q.SeqNo && now.Before(p.until) {
			return GrabResult{}, nil
		}
		// A user with a win to retry always goes through: their win waits in Redis.
		if !l.admit(q, now) {
			return GrabResult{}, nil
		}
		held = true
	}
	// The commit point: the script may take a prize. Behind the guard, a tap over its
	// budget stops here having taken nothing; from here on it is waited for.
	ctx, err = guard.Commit(ctx)
	var out Outcome
	if err == nil {
		out, err = s.hotGrab(ctx, q, userID, now)
	} else {
		err = fmt.Errorf("grab rain session %d: %w", sessionID, err)
	}
	if held {
		l.done(q.SeqNo, out.Issued, err == nil)
	}
	if errors.Is(err, ErrUnconfirmed) {
		// A win may wait unacknowledged in Redis: the user's next tap must ask for it.
		l.retry.Store(userID, struct{}{})
	}
	if err != nil {
		return GrabResult{}, err
	}
	switch out.Status {
	case Won, Again:
		return s.answer(ctx, l, out.Win)
	case Paced:
		until := q.NextRelease(now, out.Issued)
		if until.IsZero() {
			// Every prize of this version is issued: nothing more until a new version.
			until = q.End
		}
		l.paced.Store(&pacedNote{seq: q.SeqNo, until: until})
		return GrabResult{}, nil
	case Empty:
		l.empty.Store(q.SeqNo)
		return GrabResult{}, fmt.Errorf("rain session %d pool: %w", sessionID, ErrEnded)
	case Capped:
		return GrabResult{}, fmt.Errorf("user in rain session %d: %w", sessionID, ErrCapReached)
	case NotStarted:
		return GrabResult{}, fmt.Errorf("rain session %d: %w", sessionID, ErrNotStarted)
	case Ended:
		return GrabResult{}, fmt.Errorf("rain session %d: %w", sessionID, ErrEnded)
	}
	return GrabResult{}, fmt.Errorf("grab rain session %d: unknown outcome %d", sessionID, out.Status)
}

// hotGrab runs the grab script for userID at now, rebuilding the hot state when it is not
// there.
func (s *Service) hotGrab(ctx context.Context, q *Quota, userID string, now time.Time) (Outcome, error) {
	out, err := s.opts.Hot.Grab(ctx, q.SessionID, userID, now, q.Allowed(now), q.UserCap)
	if errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrUnconfirmed) {
		// Not in the hot state: never loaded, or lost with Redis.
		if rerr := s.recover(ctx, q); rerr != nil {
			return Outcome{}, rerr
		}
		out, err = s.opts.Hot.Grab(ctx, q.SessionID, userID, now, q.Allowed(now), q.UserCap)
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("grab rain session %d: %w", q.SessionID, err)
	}
	return out, nil
}

// answer makes a win durable and answers it. The green channel's note goes out with the
// event, both round trips in the time of one; a win returned again is noted again (the
// note is keyed by the win, so that is a no-op unless the first note failed).
func (s *Service) answer(ctx context.Context, l *local, w Win) (GrabResult, error) {
	var noted error
	var wg sync.WaitGroup
	wg.Go(func() { noted = s.opts.Hot.AddPending(ctx, w) })
	pctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	err := s.opts.Events.PublishWin(pctx, w)
	cancel()
	wg.Wait()
	if err == nil && noted != nil {
		err = noted
	}
	if err != nil {
		// Unacknowledged in Redis, so the next tap returns it; it must reach Redis.
		l.retry.Store(w.UserID, struct{}{})
		return GrabResult{}, fmt.Errorf("win %s taken but not yet durable, retry: %w (%w)", w.MsgID(), ErrUnavailable, err)
	}
	if err := s.opts.Hot.Acked(ctx, w); err != nil {
		// The next tap returns it again and publishes a repeat the broker drops.
		s.opts.Logger.Warn("rain win durable but not marked so", "win", w.MsgID(), "err", err)
	}
	l.retry.Delete(w.UserID)
	return GrabResult{Won: true, Win: w}, nil
}

// localOf returns the session's local notes, made on first use.
func (s *Service) localOf(sessionID int64) *local {
	if v, ok := s.local.Load(sessionID); ok {
		return v.(*local)
	}
	v, _ := s.local.LoadOrStore(sessionID, new(local))
	return v.(*local)
}

// quota returns the version in force on this node, reading the session from the Store
// when the node has none yet (one read per session however many grabs ask).
func (s *Service) quota(ctx context.Context, sessionID int64) (*Quota, error) {
	if q := s.opts.Agent.Quota(sessionID); q != nil {
		return q, nil
	}
	if sessionID <= 0 {
		return nil, fmt.Errorf("rain session %d: %w", sessionID, ErrNotFound)
	}
	_, err, _ := s.loads.Do(strconv.FormatInt(sessionID, 10), func() (any, error) {
		sess, err := s.opts.Store.Session(ctx, sessionID)
		if err != nil {
			return nil, err
		}
		// An ended session's version is kept too: its end answers the taps that keep
		// coming after it locally, instead of a Store read each.
		q := sess.Quota
		q.SessionID = sessionID
		_, err = s.opts.Agent.Offer(q)
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	if q := s.opts.Agent.Quota(sessionID); q != nil {
		return q, nil
	}
	return nil, fmt.Errorf("rain session %d: no quota version in force: %w", sessionID, ErrUnavailable)
}

// recover rebuilds a session the hot state lacks from the Store, once every win event
// published so far is applied there: the prizes not recorded as won go back to the pool
// and the recorded wins rebuild the issued count and each user's wins, so nothing goes
// over the plan, the prizes or a cap. A win taken in Redis whose event never reached the
// broker was answered with an error, and its prize is free again. Until the rebuild is
// done, grabs answer ErrUnavailable. The quota in force says whether the session is
// still open, so the taps of a lost session cost no Store read each.
func (s *Service) recover(ctx context.Context, q *Quota) error {
	if !s.opts.Now().Before(q.End) {
		return fmt.Errorf("rain session %d: %w", q.SessionID, ErrEnded)
	}
	if err := s.rebuildOnce(ctx, q.SessionID); err != nil {
		return fmt.Errorf("rain session %d being rebuilt: %w (%w)", q.SessionID, ErrUnavailable, err)
	}
	return nil
}

// rebuildOnce runs reload for the session, one at a time per session on this node however
// many grabs ask for it, bounded by RecoverTimeout; a grab waits at most PublishTimeout
// and the rebuild goes on without it.
func (s *Service) rebuildOnce(ctx context.Context, sessionID int64) error {
	if s.opts.Drain == nil {
		return fmt.Errorf("rain session %d lost from the hot state and no rebuild configured: %w", sessionID, ErrUnavailable)
	}
	return s.rebuild.Do(ctx, strconv.FormatInt(sessionID, 10), s.opts.RecoverTimeout, s.opts.PublishTimeout,
		func(ctx context.Context) error { return s.reload(ctx, sessionID) },
		func(err error) { s.opts.Logger.Warn("rebuild rain session", "session_id", sessionID, "err", err) })
}

// reload lets the grabs in flight finish, waits for their events to be applied, then
// loads the session from the Store.
func (s *Service) reload(ctx context.Context, sessionID int64) error {
	if err := rebuild.Settle(ctx, s.opts.RecoverGrace, s.opts.Drain.WaitApplied); err != nil {
		return fmt.Errorf("rebuild rain session %d: %w", sessionID, err)
	}
	sess, err := s.opts.Store.Session(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("rebuild rain session %d: %w", sessionID, err)
	}
	if sess.State != StateArmed {
		// Ended (and its ledger written) while this node still held it open: nothing
		// to grab any more, and nothing to load.
		return fmt.Errorf("rebuild rain session %d: already ended", sessionID)
	}
	prizes, err := s.opts.Store.Prizes(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("rebuild rain session %d: %w", sessionID, err)
	}
	wins, err := s.opts.Store.SessionWins(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("rebuild rain session %d: %w", sessionID, err)
	}
	left := unwon(prizes, wins)
	wrote, err := s.opts.Hot.Load(ctx, HotSession{ID: sessionID, Start: sess.Quota.Start, End: sess.Quota.End, Left: left, Wins: wins})
	if err != nil {
		return fmt.Errorf("rebuild rain session %d: %w", sessionID, err)
	}
	// What this node learned from the lost copy no longer holds.
	s.local.Delete(sessionID)
	s.opts.Logger.Info("rain session rebuilt from the store", "session_id", sessionID, "wrote", wrote, "left", len(left), "won", len(wins))
	return nil
}

// unwon returns the prizes no win names, by index.
func unwon(prizes []Prize, wins []Win) []Prize {
	won := make(map[int]bool, len(wins))
	for _, w := range wins {
		won[w.Prize.Index] = true
	}
	left := make([]Prize, 0, len(prizes))
	for _, p := range prizes {
		if !won[p.Index] {
			left = append(left, p)
		}
	}
	slices.SortFunc(left, func(a, b Prize) int { return a.Index - b.Index })
	return left
}

// Permanent reports whether a win's error is one no retry can fix: the consumer
// dead-letters such a win and the green channel stops offering it.
func Permanent(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound)
}

// ApplyWins credits wins (the consumer of the win events, and the green channel): a SKU
// win's draws are recharged first, then the Store records and credits every win whose
// recharge did not fail, idempotently by the win; the wins done (or never doable) leave
// the pending lists. It returns each win's outcome.
func (s *Service) ApplyWins(ctx context.Context, wins []Win) []error {
	errs := make([]error, len(wins))
	var (
		ready []Win
		at    []int
	)
	for i, w := range wins {
		if w.Prize.Kind == KindSKU {
			if err := s.grant(ctx, w); err != nil {
				// Not recorded: a recorded win counts as credited (a rebuild or the end
				// would not apply it again), so it waits for the recharge.
				errs[i] = err
				continue
			}
		}
		ready = append(ready, w)
		at = append(at, i)
	}
	if len(ready) > 0 {
		applied := s.opts.Store.ApplyWins(ctx, ready)
		for j, i := range at {
			if j < len(applied) {
				errs[i] = applied[j]
			} else {
				errs[i] = fmt.Errorf("apply win %s: the store answered no outcome", wins[i].MsgID())
			}
		}
	}
	s.forget(ctx, wins, errs)
	return errs
}

// grant recharges a SKU win's draws.
func (s *Service) grant(ctx context.Context, w Win) error {
	if s.opts.SKUs == nil {
		return fmt.Errorf("sku win %s: no sku granter configured", w.MsgID())
	}
	if err := s.opts.SKUs.GrantReserved(ctx, w.UserID, w.Prize.SKU, w.BusinessNo()); err != nil {
		return fmt.Errorf("recharge sku %d for win %s: %w", w.Prize.SKU, w.MsgID(), err)
	}
	return nil
}

// forget drops from the pending lists the wins that are credited and those that never can
// be (logged and dead-lettered by the consumer), so that a read does not retry them
// forever. A failure only costs a later no-op retry.
func (s *Service) forget(ctx context.Context, wins []Win, errs []error) {
	var done []Win
	for i, err := range errs {
		if err == nil || Permanent(err) {
			done = append(done, wins[i])
		}
	}
	if len(done) == 0 {
		return
	}
	if err := s.opts.Hot.DonePending(ctx, done); err != nil {
		s.opts.Logger.Warn("forget credited rain wins", "err", err)
	}
}

// Settle is the green channel: before a user's credit or wins are read, the user's wins
// not yet credited are applied now, under the same idempotency keys as their events, so
// the events that arrive later change nothing. It returns the first error of a win that
// could not be applied now (its event still will be).
func (s *Service) Settle(ctx context.Context, userID string) error {
	pending, err := s.opts.Hot.Pending(ctx, userID)
	if err != nil || len(pending) == 0 {
		return err
	}
	for i, err := range s.ApplyWins(ctx, pending) {
		if err != nil && !Permanent(err) {
			return fmt.Errorf("settle rain win %s: %w", pending[i].MsgID(), err)
		}
	}
	return nil
}

// Wins returns a user's recorded wins in a session (every session when sessionID is 0),
// after applying the user's pending ones. When that fails the recorded ones are still
// answered: the events record the rest soon.
func (s *Service) Wins(ctx context.Context, userID string, sessionID int64) ([]Win, error) {
	if err := checkUser(userID); err != nil {
		return nil, err
	}
	if sessionID < 0 {
		return nil, fmt.Errorf("rain session %d: %w", sessionID, ErrNotFound)
	}
	if err := s.Settle(ctx, userID); err != nil {
		s.opts.Logger.Warn("rain green channel", "user_id", userID, "err", err)
	}
	return s.opts.Store.Wins(ctx, userID, sessionID)
}

// Sessions returns the upcoming and live sessions by start time, and the time they were
// read at (for the clients' countdowns).
func (s *Service) Sessions(ctx context.Context) ([]Session, time.Time, error) {
	now := s.opts.Now()
	all, err := s.opts.Store.Sessions(ctx, now)
	if err != nil {
		return nil, now, err
	}
	live := make([]Session, 0, len(all))
	for _, sess := range all {
		if sess.State == StateArmed {
			live = append(live, sess)
		}
	}
	return live, now, nil
}

// SessionsEndingAfter returns every session, in any state, that ends after t (the
// operator console lists the last day's sessions with the live and upcoming ones).
func (s *Service) SessionsEndingAfter(ctx context.Context, t time.Time) ([]Session, error) {
	return s.opts.Store.Sessions(ctx, t)
}

// Refresh puts the Store's version of every upcoming and live session in force on this
// node: the convergence for a version the bus lost or delivered before the node started.
// A version not newer than the node's is ignored by the Agent.
func (s *Service) Refresh(ctx context.Context) error {
	live, _, err := s.Sessions(ctx)
	if err != nil {
		return fmt.Errorf("refresh rain quotas: %w", err)
	}
	var first error
	for _, sess := range live {
		q := sess.Quota
		q.SessionID = sess.ID
		if _, err := s.opts.Agent.Offer(q); err != nil {
			s.opts.Logger.Error("rain quota in the store refused by the agent", "session_id", sess.ID, "seq_no", q.SeqNo, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Slice is one second of a session's report. Allowed is allowed(t) at the end of the
// second and Granted the wins by then: both cumulative, so the two read against each
// other (granted never above allowed; granted close below it while demand lasts).
type Slice struct {
	Start   time.Time
	Allowed int
	Granted int
}

// Report is a session's pacing as the operator sees it: the version in force, what the
// plan released and what was won, which SeqNo each node has, and the last hour second by
// second.
type Report struct {
	ServerTime time.Time
	Session    Session
	Total      int
	Released   int
	Granted    int
	SeqNo      int64
	Nodes      []NodeSeq
	// SliceSeconds is the width of a slice (1).
	SliceSeconds int
	Slices       []Slice
}

// maxReportSlices is how many slices a report holds: the last hour.
const maxReportSlices = 3600

// Report returns a session's pacing. Granted comes from the hot state while the session
// is live, otherwise (ended, or lost from Redis) from the recorded wins. Slices are whole
// unix seconds, from the one holding the start to the one holding now (or the end).
func (s *Service) Report(ctx context.Context, sessionID int64) (Report, error) {
	if sessionID <= 0 {
		return Report{}, fmt.Errorf("rain session %d: %w", sessionID, ErrNotFound)
	}
	sess, err := s.opts.Store.Session(ctx, sessionID)
	if err != nil {
		return Report{}, err
	}
	now := s.opts.Now()
	q := sess.Quota
	q.SessionID = sessionID
	r := Report{
		ServerTime: now, Session: sess, Total: q.Total, Released: min(q.Total, q.Allowed(now)),
		SeqNo: q.SeqNo, SliceSeconds: 1,
	}
	var (
		perSecond map[int64]int
		hot       HotState
	)
	err = ErrUnavailable
	if sess.State == StateArmed {
		hot, err = s.opts.Hot.State(ctx, sessionID)
	}
	switch {
	case err == nil:
		r.Granted, perSecond = hot.Issued, hot.PerSecond
	case !errors.Is(err, ErrUnavailable):
		return Report{}, fmt.Errorf("report rain session %d: %w", sessionID, err)
	default:
		wins, err := s.opts.Store.SessionWins(ctx, sessionID)
		if err != nil {
			return Report{}, fmt.Errorf("report rain session %d: %w", sessionID, err)
		}
		r.Granted, perSecond = len(wins), map[int64]int{}
		for _, w := range wins {
			perSecond[w.Time.Unix()]++
		}
	}
	if s.opts.Bus != nil {
		if r.Nodes, err = s.opts.Bus.Nodes(ctx, sessionID); err != nil {
			// The pacing is still worth showing without the nodes.
			s.opts.Logger.Warn("rain quota nodes", "session_id", sessionID, "err", err)
		}
	}
	r.Slices = slicesOf(&q, now, perSecond)
	return r, nil
}

// slicesOf cuts the session into unix seconds up to now (at most the last hour), each
// with allowed at its end and the wins granted by then.
func slicesOf(q *Quota, now time.Time, perSecond map[int64]int) []Slice {
	if now.Before(q.Start) {
		return nil
	}
	last := now
	if !now.Before(q.End) {
		last = q.End.Add(-time.Millisecond)
	}
	from, to := q.Start.Unix(), last.Unix()
	if to-from+1 > maxReportSlices {
		from = to - maxReportSlices + 1
	}
	// The wins before the first slice shown start its cumulative count.
	granted := 0
	for sec, n := range perSecond {
		if sec < from {
			granted += n
		}
	}
	out := make([]Slice, 0, to-from+1)
	for sec := from; sec <= to; sec++ {
		granted += perSecond[sec]
		out = append(out, Slice{Start: time.Unix(sec, 0), Allowed: q.Allowed(time.Unix(sec+1, 0)), Granted: granted})
	}
	return out
}

// drain waits, at most RecoverTimeout, for every win event published so far to be
// applied.
func (s *Service) drain(ctx context.Context) error {
	if s.opts.Drain == nil {
		return fmt.Errorf("no drain configured: %w", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.RecoverTimeout)
	defer cancel()
	return s.opts.Drain.WaitApplied(ctx)
}
