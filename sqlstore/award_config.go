package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/rebate"
)

// awardCacheTTL bounds how long an award row is served from memory: distribution looks
// one up per message.
const awardCacheTTL = time.Minute

// AwardConfigs reads award rows and behaviour rebate rows from the config database,
// caching awards for a minute. It implements award.Configs and rebate.Configs.
type AwardConfigs struct {
	db  *DB
	now func() time.Time

	mu     sync.Mutex
	awards map[int]cachedAward
}

type cachedAward struct {
	a     award.Award
	until time.Time
}

var (
	_ award.Configs  = (*AwardConfigs)(nil)
	_ rebate.Configs = (*AwardConfigs)(nil)
)

// NewAwardConfigs returns an AwardConfigs on a migrated config database.
func NewAwardConfigs(db *DB) *AwardConfigs {
	return &AwardConfigs{db: db, now: time.Now, awards: map[int]cachedAward{}}
}

// Award implements award.Configs; an unknown id wraps award.ErrUnknownAward.
func (s *AwardConfigs) Award(ctx context.Context, awardID int) (award.Award, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.awards[awardID]
	s.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.a, nil
	}
	a := award.Award{ID: awardID}
	err := s.db.SQL.QueryRowContext(ctx, "SELECT award_key, award_config, award_desc FROM award WHERE award_id = ?", awardID).
		Scan(&a.Key, &a.Config, &a.Desc)
	if errors.Is(err, sql.ErrNoRows) {
		return award.Award{}, fmt.Errorf("award %d: %w", awardID, award.ErrUnknownAward)
	}
	if err != nil {
		return award.Award{}, fmt.Errorf("load award %d: %w", awardID, err)
	}
	s.mu.Lock()
	s.awards[awardID] = cachedAward{a: a, until: now.Add(awardCacheTTL)}
	s.mu.Unlock()
	return a, nil
}

// BehaviorRebates implements rebate.Configs: the open rebate rows of a behaviour, in id
// order.
func (s *AwardConfigs) BehaviorRebates(ctx context.Context, behavior rebate.Behavior) ([]rebate.Config, error) {
	var out []rebate.Config
	err := queryEach(ctx, s.db.SQL, "SELECT behavior_type, rebate_desc, rebate_type, rebate_config FROM daily_behavior_rebate"+
		" WHERE behavior_type = ? AND state = 'open' ORDER BY id", []any{string(behavior)}, func(rows *sql.Rows) error {
		var c rebate.Config
		if err := rows.Scan(&c.Behavior, &c.Desc, &c.Type, &c.Value); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("behavior rebates %s: %w", behavior, err)
	}
	return out, nil
}
