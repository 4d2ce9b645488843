// Package gate intercepts draws before they take quota (拦截无效流量): per-activity
// settings, the sold-out refusal of activities without fallback, one win per user and
// signed draw paths (URL 动态加密).
//
// The draw calls it in two places:
//
//   - Checker.Admit before any quota is taken: a sold-out activity without fallback is
//     refused (strategy.ErrSoldOut), a one-win activity's winner is refused
//     (ErrAlreadyWon), and a one-win draw holds the user's slot in the activity until the
//     Pass is closed, so that two concurrent draws of one user cannot both win;
//   - Pass.Won after the pick and before its outcome is fixed: a stocked win is noted in
//     the cluster-wide winner set (a fixed outcome is always recorded in the end, so the
//     note is never taken back); Pass.Close ends the hold.
//
// Signed paths are checked by the HTTP layer (CheckPath) before the draw reads anything.
package gate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/strategy"
)

// Domain errors; httpapi maps them to codes. A sold-out activity is strategy.ErrSoldOut
// (ERR_BIZ_010), whether refused here or found by the draw's own pick.
var (
	// ErrAlreadyWon refuses a draw of a user who already won a stocked award in a one-win
	// activity (ERR_BIZ_011).
	ErrAlreadyWon = errors.New("user already won a stocked award in this activity")
	// ErrBadPath refuses a draw of a signed-path activity without a valid path: the plain
	// draw, another user's or activity's path, an expired or a used one (ERR_BIZ_012).
	ErrBadPath = errors.New("draw path missing, invalid, expired or used")
	// ErrBusy refuses a draw while another draw of the same user in the same one-win
	// activity runs (0009: retry; its outcome is not known yet).
	ErrBusy = errors.New("another draw of the user in this activity is running")
	// ErrRebuilding refuses a draw of a one-win activity whose winner set was lost (a
	// Redis loss) and cannot be rebuilt yet: the award records do not hold every win
	// answered before the loss until the draw writer has applied them (0009: retry).
	ErrRebuilding = errors.New("one-win set being rebuilt after a loss")
	// ErrInvalidSettings refuses settings out of range (0002).
	ErrInvalidSettings = errors.New("invalid activity settings")
	// ErrPathsOff refuses a draw path for an activity that does not use them (0002).
	ErrPathsOff = errors.New("activity does not use signed draw paths")
)

// MaxPathWindow bounds Settings.PathWindow.
const MaxPathWindow = 24 * time.Hour

// Settings are one activity's draw settings (table raffle_activity_setting); the zero
// value, with the activity's id, is the default of an activity without a row.
type Settings struct {
	ActivityID int64
	// OneWin refuses a user who already won a stocked award in the activity.
	OneWin bool
	// SignedPath refuses draws that do not come through a signed path.
	SignedPath bool
	// PathWindow is how long a signed path stays valid (whole seconds).
	PathWindow time.Duration
}

// Validate checks the settings' ranges: a window of whole seconds up to MaxPathWindow,
// and at least a second when signed paths are on.
func (s Settings) Validate() error {
	switch {
	case s.ActivityID <= 0:
		return fmt.Errorf("activityId must be a positive integer: %w", ErrInvalidSettings)
	case s.PathWindow < 0 || s.PathWindow > MaxPathWindow || s.PathWindow%time.Second != 0:
		return fmt.Errorf("pathWindowSeconds must be an integer from 0 to %d: %w", int(MaxPathWindow/time.Second), ErrInvalidSettings)
	case s.SignedPath && s.PathWindow == 0:
		return fmt.Errorf("pathWindowSeconds must be at least 1 when signedPath is on: %w", ErrInvalidSettings)
	}
	return nil
}

// Store keeps the settings; sqlstore implements it on the config database.
type Store interface {
	// ActivitySettings returns the activity's row; false when it has none.
	ActivitySettings(ctx context.Context, activityID int64) (Settings, bool, error)
	// SaveActivitySettings creates or replaces the activity's row.
	SaveActivitySettings(ctx context.Context, s Settings) error
}

// Announcer tells the other nodes that an activity's settings changed, so that they drop
// their cached copy.
type Announcer interface {
	AnnounceSettings(ctx context.Context, activityID int64) error
}

// Activities gives an activity's config (its strategy and dates).
type Activities interface {
	Activity(ctx context.Context, activityID int64) (activity.Activity, error)
}

// Strategies is what the gate needs of the strategy engine.
type Strategies interface {
	// SoldOut reports whether every stocked award of a strategy without fallback is out.
	SoldOut(ctx context.Context, strategyID int64) (bool, error)
	Assembled(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
}

// Hold is what Wins.Hold found.
type Hold int

// Hold outcomes.
const (
	Held     Hold = iota // the slot is held for the caller, and the user has not won
	Won                  // the user won a stocked award in the activity; nothing held
	Busy                 // another draw holds the slot; nothing held
	Unknown              // the slot is held, but the set does not know the activity (a loss): rebuild
	NotReady             // the set does not know the activity and cannot be rebuilt yet (a loss not yet restored); nothing held
)

// Wins is the cluster-wide record of who won a stocked award where (a Redis set per user),
// with a hold per user and activity that serialises the user's one-win draws.
//
// A set lost with Redis (or, fenced, rolled back by a failover or a restart that may have
// lost a win) is rebuilt from the award records, which a draw path that writes
// them behind its answers (the flash draw) completes only once its writer has applied
// every draw published before the loss. Such a Wins answers NotReady until then, and an
// Unknown hold carries the epoch of the state the records are read under: Rebuilt
// refuses it (ErrRebuilding) if another loss came in between.
type Wins interface {
	// Hold takes the user's slot in the activity for ttl under token, unless the user has
	// won there or another draw holds it. With Unknown it returns the epoch a rebuild is
	// read under ("" when the records are always complete).
	Hold(ctx context.Context, userID string, activityID int64, token string, ttl time.Duration) (Hold, string, error)
	// Rebuilt records what the award records, read under epoch, say of the user in the
	// activity after an Unknown hold: that the set now knows the activity, and whether the
	// user won there. An epoch gone (a loss since) wraps ErrRebuilding; nothing is written.
	Rebuilt(ctx context.Context, userID string, activityID int64, epoch string, won bool) error
	// Note records a stocked win.
	Note(ctx context.Context, userID string, activityID int64) error
	// Release ends a hold if it is still the token's.
	Release(ctx context.Context, userID string, activityID int64, token string) error
}

// Records reads a user's award records in an activity: the durable truth the winner set
// is rebuilt from.
type Records interface {
	AwardRecords(ctx context.Context, userID string, activityID int64) ([]award.Record, error)
}

// Nonces remembers the signed paths used, cluster-wide, and the user's path generation
// the marks belong to: a loss of the marks (a Redis flush) loses the generation with
// them, so that no path issued before the loss is spent after it.
type Nonces interface {
	// Generation returns the user's path generation, starting a new random one when the
	// user has none, and keeps it at least until until (the expiry of a path issued
	// under it).
	Generation(ctx context.Context, userID string, until time.Time) (uint64, error)
	// Use marks the nonce of a path of the user's generation gen used until until, if gen
	// is still the user's generation and the nonce was not used before.
	Use(ctx context.Context, userID string, gen uint64, nonce string, until time.Time) (PathUse, error)
}

// PathUse is what Nonces.Use found.
type PathUse int

// PathUse outcomes.
const (
	PathSpent PathUse = iota // the path was fresh and is now used
	PathUsed                 // the path was used before
	PathStale                // the path's generation is gone (a Redis loss since it was issued) or expired
)

// Checker is what a draw path asks before it takes quota.
type Checker interface {
	// Admit refuses a draw that cannot or may not win, before it takes any quota; hold
	// is how long the draw may run (a one-win draw holds the user's slot that long at
	// most). The Pass must be closed.
	Admit(ctx context.Context, userID string, activityID int64, hold time.Duration) (Pass, error)
}

// Pass is an admitted draw.
type Pass interface {
	// Won is told the draw's pick before the draw is recorded; a stocked win of a one-win
	// activity is noted, and an error means it could not be: the draw must not be
	// recorded (its stock unit is lost: undersell, never a second win).
	Won(ctx context.Context, res strategy.Result) error
	// Close ends the pass (releases the hold).
	Close()
}

// Options configures a Gate.
type Options struct {
	Store      Store
	Announcer  Announcer // may be nil: a single node
	Activities Activities
	Strategies Strategies
	Wins       Wins
	Records    Records
	Nonces     Nonces
	// Secret is the HMAC key of the signed paths, the same on every node.
	Secret []byte
	// CacheTTL bounds how long a node serves settings it did not hear changed (an
	// announcement missed); default 10s.
	CacheTTL time.Duration
	// StockedTTL is how long a node admits the draws of a strategy without fallback that
	// it last found not sold out before it asks Strategies.SoldOut again (default 1s), so
	// that the sold-out check does not cost a Redis round trip per draw. It only delays
	// the fast refusal: a draw admitted meanwhile of a sold-out activity takes its unit,
	// finds no stock and gets the unit back with ERR_BIZ_010 (the draw's own check). A
	// sold-out answer is never cached here: it comes from the strategy engine's
	// node-local sold-out flags, which a top-up clears on the node that makes it at once,
	// on the others when its armory announcement arrives, and everywhere within
	// strategy.Options.SoldOutTTL (5s) if that is missed.
	StockedTTL time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// Gate implements Checker and the settings and path endpoints.
type Gate struct {
	opts  Options
	cache sync.Map // int64 → cachedSettings
	mu    sync.Mutex
	// gens counts Forget calls per activity, so that a load that began before a change
	// cannot cache the old row after it.
	gens map[int64]uint64
	// stocked holds, per strategy id, until when this node admits its draws without
	// asking whether it is sold out (a time.Time; see Options.StockedTTL); checks shares
	// one question among the draws that find it lapsed together.
	stocked sync.Map
	checks  singleflight.Group
}

type cachedSettings struct {
	s     Settings
	until time.Time
}

// New returns a Gate.
func New(opts Options) *Gate {
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Second
	}
	if opts.StockedTTL <= 0 {
		opts.StockedTTL = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Gate{opts: opts, gens: map[int64]uint64{}}
}

// Settings returns the activity's settings, from memory when fresh; an activity without a
// row has the defaults.
func (g *Gate) Settings(ctx context.Context, activityID int64) (Settings, error) {
	if c, ok := g.cache.Load(activityID); ok && g.opts.Now().Before(c.(cachedSettings).until) {
		return c.(cachedSettings).s, nil
	}
	gen := g.generation(activityID)
	s, found, err := g.opts.Store.ActivitySettings(ctx, activityID)
	if err != nil {
		return Settings{}, fmt.Errorf("settings of activity %d: %w", activityID, err)
	}
	if !found {
		s = Settings{ActivityID: activityID}
	}
	g.mu.Lock()
	if g.gens[activityID] == gen {
		g.cache.Store(activityID, cachedSettings{s: s, until: g.opts.Now().Add(g.opts.CacheTTL)})
	}
	g.mu.Unlock()
	return s, nil
}

func (g *Gate) generation(activityID int64) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gens[activityID]
}

// Forget drops this node's copy of the activity's settings: they changed (here, or on
// another node, which announced it).
func (g *Gate) Forget(activityID int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gens[activityID]++
	g.cache.Delete(activityID)
}

// SaveSettings validates and stores an activity's settings, and makes every node read
// them: this one at once, the others through the Announcer (or within CacheTTL if they
// miss it). The activity must exist.
func (g *Gate) SaveSettings(ctx context.Context, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if _, err := g.opts.Activities.Activity(ctx, s.ActivityID); err != nil {
		return err
	}
	if err := g.opts.Store.SaveActivitySettings(ctx, s); err != nil {
		return fmt.Errorf("save settings of activity %d: %w", s.ActivityID, err)
	}
	g.Forget(s.ActivityID)
	if g.opts.Announcer != nil {
		if err := g.opts.Announcer.AnnounceSettings(context.WithoutCancel(ctx), s.ActivityID); err != nil {
			g.opts.Logger.Warn("activity settings saved but not announced; other nodes read them within the cache TTL",
				"activity_id", s.ActivityID, "err", err)
		}
	}
	return nil
}

// Admit implements Checker: the sold-out refusal first (no quota, no hold), then for a
// one-win activity the winner set and the user's hold.
func (g *Gate) Admit(ctx context.Context, userID string, activityID int64, hold time.Duration) (Pass, error) {
	a, err := g.opts.Activities.Activity(ctx, activityID)
	if err != nil {
		return nil, err
	}
	if err := g.checkSoldOut(ctx, activityID, a.StrategyID); err != nil {
		return nil, err
	}
	s, err := g.Settings(ctx, activityID)
	if err != nil {
		return nil, err
	}
	if !s.OneWin {
		return noPass{}, nil
	}
	token := newToken()
	h, epoch, err := g.opts.Wins.Hold(ctx, userID, activityID, token, hold)
	if err != nil {
		return nil, fmt.Errorf("one-win check of %s in activity %d: %w", userID, activityID, err)
	}
	p := &pass{g: g, userID: userID, activityID: activityID, token: token}
	switch h {
	case Won:
		return nil, fmt.Errorf("%s in activity %d: %w", userID, activityID, ErrAlreadyWon)
	case Busy:
		return nil, fmt.Errorf("%s in activity %d: %w", userID, activityID, ErrBusy)
	case NotReady:
		return nil, fmt.Errorf("%s in activity %d: %w", userID, activityID, ErrRebuilding)
	case Unknown:
		won, err := g.rebuild(ctx, userID, activityID, epoch)
		if err != nil {
			p.Close()
			return nil, err
		}
		if won {
			p.Close()
			return nil, fmt.Errorf("%s in activity %d: %w", userID, activityID, ErrAlreadyWon)
		}
	}
	return p, nil
}

// checkSoldOut refuses a draw of a sold-out strategy without fallback (strategy.ErrSoldOut).
// A strategy found not sold out is admitted without asking again for StockedTTL.
func (g *Gate) checkSoldOut(ctx context.Context, activityID, strategyID int64) error {
	now := g.opts.Now()
	if until, ok := g.stocked.Load(strategyID); ok && now.Before(until.(time.Time)) {
		return nil
	}
	v, err, _ := g.checks.Do(strconv.FormatInt(strategyID, 10), func() (any, error) {
		// Shared by the draws asking together: none of their deadlines cuts it short.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bgTimeout)
		defer cancel()
		out, err := g.opts.Strategies.SoldOut(ctx, strategyID)
		if err == nil && !out {
			g.stocked.Store(strategyID, g.opts.Now().Add(g.opts.StockedTTL))
		}
		return out, err
	})
	if err != nil {
		return fmt.Errorf("admit draw of activity %d: %w", activityID, err)
	}
	if v.(bool) {
		return fmt.Errorf("every stocked award of activity %d is gone: %w", activityID, strategy.ErrSoldOut)
	}
	return nil
}

// rebuild reads whether the user won a stocked award in the activity from the award
// records, and tells the winner set under the epoch the Hold gave. It runs holding the
// user's slot, so no draw of the user in the activity records meanwhile.
func (g *Gate) rebuild(ctx context.Context, userID string, activityID int64, epoch string) (bool, error) {
	recs, err := g.opts.Records.AwardRecords(ctx, userID, activityID)
	if err != nil {
		return false, fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
	}
	won := false
	for _, r := range recs {
		a, err := g.opts.Strategies.Assembled(ctx, r.StrategyID)
		if err != nil {
			return false, fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
		}
		if a.IsStocked(r.AwardID) {
			won = true
			break
		}
	}
	if err := g.opts.Wins.Rebuilt(ctx, userID, activityID, epoch, won); err != nil {
		return false, fmt.Errorf("rebuild one-win of %s in activity %d: %w", userID, activityID, err)
	}
	return won, nil
}

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// None admits every draw: a draw path without a gate.
var None Checker = none{}

type none struct{}

func (none) Admit(context.Context, string, int64, time.Duration) (Pass, error) { return noPass{}, nil }

// noPass is the Pass of a draw that the gate does not follow.
type noPass struct{}

func (noPass) Won(context.Context, strategy.Result) error { return nil }
func (noPass) Close()                                     {}

// pass is the Pass of a one-win draw: it holds the user's slot.
type pass struct {
	g          *Gate
	userID     string
	activityID int64
	token      string
}

// bgTimeout bounds the Redis round trips a pass makes after its draw's context.
const bgTimeout = 2 * time.Second

func (p *pass) Won(ctx context.Context, res strategy.Result) error {
	if !res.Stocked {
		return nil
	}
	if err := p.g.opts.Wins.Note(ctx, p.userID, p.activityID); err != nil {
		return fmt.Errorf("note one win of %s in activity %d: %w", p.userID, p.activityID, err)
	}
	return nil
}

func (p *pass) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), bgTimeout)
	defer cancel()
	if err := p.g.opts.Wins.Release(ctx, p.userID, p.activityID, p.token); err != nil {
		p.g.opts.Logger.Warn("release one-win hold; it expires", "user_id", p.userID, "activity_id", p.activityID, "err", err)
	}
}
