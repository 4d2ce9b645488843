package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/bigmarket/bigmarket/activity"
)

// participation is one Participate call waiting for its group's transaction.
type participation struct {
	key   activity.QuotaKey
	order activity.RaffleOrder
	reuse bool
	take  func(*activity.Quota) error
	table int

	out     activity.Taken
	err     error
	takeErr bool // err is take's own error
	done    chan struct{}
}

// Participate implements activity.UserStore. Participations that reach a user database
// together run in one transaction (group commit), in arrival order: each one's take sees
// the quota rows as the ones before it left them, and a take that fails leaves only its
// own participation out. A transaction that fails for another reason is run again one
// participation at a time, so a bad one fails alone.
func (s *UserStore) Participate(ctx context.Context, key activity.QuotaKey, order activity.RaffleOrder, reuse bool, take func(*activity.Quota) error) (activity.Taken, error) {
	order, err := s.raffleOrderFor(key, order)
	if err != nil {
		return activity.Taken{}, fmt.Errorf("participate %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	if err := ctx.Err(); err != nil {
		return activity.Taken{}, err
	}
	r := s.router.Route(key.UserID)
	p := &participation{key: key, order: order, reuse: reuse, take: take, table: r.Table, done: make(chan struct{})}
	s.participations[r.DB].submit(p)
	<-p.done // bounded by groupTimeout: the write is either committed or not, never left open
	switch {
	case p.takeErr:
		return activity.Taken{}, p.err
	case p.err != nil:
		return activity.Taken{}, fmt.Errorf("participate %s/%d: %w", key.UserID, key.ActivityID, p.err)
	}
	return p.out, nil
}

// runParticipations is the group of database dbi's participations.
func (s *UserStore) runParticipations(dbi int, batch []*participation) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	err := s.inTx(ctx, s.dbs[dbi], func(tx *sql.Tx) error { return s.participateTx(ctx, tx, dbi, batch) })
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			s.runParticipations(dbi, []*participation{p})
		}
		return
	}
	for _, p := range batch {
		if err != nil {
			p.out, p.err, p.takeErr = activity.Taken{}, err, false
		}
		close(p.done)
	}
}

// participateTx runs batch in tx: the reusable orders of the users that may reuse one, the
// quota rows of every key locked, each participation in order, then the changed quota rows
// and the new orders in multi-row statements.
func (s *UserStore) participateTx(ctx context.Context, tx *sql.Tx, dbi int, batch []*participation) error {
	db := s.dbs[dbi]
	for _, p := range batch {
		p.out, p.err, p.takeErr = activity.Taken{}, nil, false
	}
	unused, err := s.unusedOrders(ctx, tx, dbi, batch)
	if err != nil {
		return err
	}
	keys := make([]activity.QuotaKey, len(batch))
	for i, p := range batch {
		keys[i] = p.key
	}
	states, err := loadQuotas(ctx, tx, db.Dialect, keys, true)
	if err != nil {
		return err
	}
	var (
		created = map[int][]*participation{} // by table
		changed = map[activity.QuotaKey]bool{}
	)
	for _, p := range batch {
		st := states[p.key]
		ua := userActivity{p.key.UserID, p.key.ActivityID}
		if orders := unused[ua]; p.reuse && len(orders) > 0 {
			p.out = activity.Taken{Quota: cloneQuota(st.cur), Order: orders[0], Reused: true}
			unused[ua] = orders[1:]
			continue
		}
		q := cloneQuota(st.cur)
		if err := p.take(&q); err != nil {
			p.err, p.takeErr = err, true
			continue
		}
		st.cur, changed[p.key] = q, true
		p.out = activity.Taken{Quota: cloneQuota(q), Order: p.order}
		created[p.table] = append(created[p.table], p)
	}
	write := make([]*quotaState, 0, len(changed))
	for k := range changed {
		write = append(write, states[k])
	}
	now := sqlTime(s.now())
	if err := writeQuotas(ctx, tx, write, now); err != nil {
		return err
	}
	for table, ps := range created {
		rows := make([][]any, len(ps))
		for i, p := range ps {
			o := p.order
			rows[i] = []any{o.UserID, o.ActivityID, o.ActivityName, o.StrategyID, o.OrderID, sqlTime(o.OrderTime), string(o.State), now}
		}
		if _, err := tx.ExecContext(ctx, insertSQL("user_raffle_order"+TableSuffix(table), raffleOrderInsertColumns, len(rows)), flatten(rows)...); err != nil {
			return fmt.Errorf("insert raffle orders: %w", err)
		}
	}
	return nil
}

var raffleOrderInsertColumns = append(strings.Split(raffleOrderColumns, ", "), "update_time")

type userActivity struct {
	user     string
	activity int64
}

// unusedOrders returns, oldest first, the orders still in state create of the users in
// batch that may reuse one: one statement over their tables.
func (s *UserStore) unusedOrders(ctx context.Context, q queryer, dbi int, batch []*participation) (map[userActivity][]activity.RaffleOrder, error) {
	type scope struct {
		users      []string
		activities []int64
	}
	tables := map[int]*scope{}
	want := map[userActivity]bool{}
	for _, p := range batch {
		ua := userActivity{p.key.UserID, p.key.ActivityID}
		if !p.reuse || want[ua] {
			continue
		}
		want[ua] = true
		sc := tables[p.table]
		if sc == nil {
			sc = &scope{}
			tables[p.table] = sc
		}
		if !slices.Contains(sc.users, ua.user) {
			sc.users = append(sc.users, ua.user)
		}
		if !slices.Contains(sc.activities, ua.activity) {
			sc.activities = append(sc.activities, ua.activity)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	var (
		parts []string
		args  []any
	)
	for table, sc := range tables {
		parts = append(parts, "SELECT id, "+raffleOrderColumns+" FROM user_raffle_order"+TableSuffix(table)+
			" WHERE user_id IN "+Placeholders(1, len(sc.users))+" AND activity_id IN "+Placeholders(1, len(sc.activities))+
			" AND order_state = 'create'")
		args = appendStrings(args, sc.users)
		for _, a := range sc.activities {
			args = append(args, a)
		}
	}
	type row struct {
		id    int64
		order activity.RaffleOrder
	}
	found := map[userActivity][]row{}
	err := queryEach(ctx, q, strings.Join(parts, " UNION ALL "), args, func(rows *sql.Rows) error {
		var (
			r  row
			at nullTime
		)
		o := &r.order
		if err := rows.Scan(&r.id, &o.UserID, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at, &o.State); err != nil {
			return err
		}
		o.OrderTime = at.Time
		if ua := (userActivity{o.UserID, o.ActivityID}); want[ua] {
			found[ua] = append(found[ua], r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unused orders: %w", err)
	}
	out := make(map[userActivity][]activity.RaffleOrder, len(found))
	for ua, rs := range found {
		slices.SortFunc(rs, func(a, b row) int {
			return cmp.Or(a.order.OrderTime.Compare(b.order.OrderTime), cmp.Compare(a.id, b.id))
		})
		for _, r := range rs {
			out[ua] = append(out[ua], r.order)
		}
	}
	return out, nil
}
