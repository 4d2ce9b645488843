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
	err := s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error { return s.participateTx(ctx, tx, multi, dbi, batch) })
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

// participateTx runs batch in tx in two scripts: first the reusable orders of the users
// that may reuse one and the quota rows of every key, locked; then, after each
// participation has run in order, the changed quota rows and the new orders in multi-row
// statements.
func (s *UserStore) participateTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, batch []*participation) error {
	db := s.dbs[dbi]
	for _, p := range batch {
		p.out, p.err, p.takeErr = activity.Taken{}, nil, false
	}
	keys := make([]activity.QuotaKey, len(batch))
	for i, p := range batch {
		keys[i] = p.key
	}
	var reads script
	unused := readUnusedOrders(&reads, batch)
	states := readQuotas(&reads, db.Dialect, keys, true)
	if err := reads.run(ctx, tx, multi); err != nil {
		return err
	}
	started(states)
	var (
		created = map[int][]*participation{} // by table
		changed = map[activity.QuotaKey]bool{}
		orders  = unused.oldestFirst()
	)
	for _, p := range batch {
		st := states[p.key]
		ua := userActivity{p.key.UserID, p.key.ActivityID}
		if os := orders[ua]; p.reuse && len(os) > 0 {
			p.out = activity.Taken{Quota: st.cur.Clone(), Order: os[0], Reused: true}
			orders[ua] = os[1:]
			continue
		}
		q := st.cur.Clone()
		if err := p.take(&q); err != nil {
			p.err, p.takeErr = err, true
			continue
		}
		st.cur, changed[p.key] = q, true
		p.out = activity.Taken{Quota: q.Clone(), Order: p.order}
		created[p.table] = append(created[p.table], p)
	}
	var (
		writes script
		write  = make([]*quotaState, 0, len(changed))
		now    = sqlTime(s.now())
	)
	for k := range changed {
		write = append(write, states[k])
	}
	if err := writeQuotas(&writes, write, now); err != nil {
		return err
	}
	for table := range s.router.Tables {
		ps := created[table]
		if len(ps) == 0 {
			continue
		}
		rows := make([][]any, len(ps))
		for i, p := range ps {
			o := p.order
			rows[i] = []any{o.UserID, o.ActivityID, o.ActivityName, o.StrategyID, o.OrderID, sqlTime(o.OrderTime), string(o.State), now}
		}
		writes.write("insert raffle orders", insertSQL("user_raffle_order"+TableSuffix(table), raffleOrderInsertColumns, len(rows)),
			flatten(rows), len(rows), nil)
	}
	return writes.run(ctx, tx, multi)
}

var raffleOrderInsertColumns = append(strings.Split(raffleOrderColumns, ", "), "update_time")

type userActivity struct {
	user     string
	activity int64
}

// unusedRows collects the rows of readUnusedOrders.
type unusedRows map[userActivity][]unusedRow

type unusedRow struct {
	id    int64
	order activity.RaffleOrder
}

// oldestFirst returns each user's unused orders by order time, then id.
func (u unusedRows) oldestFirst() map[userActivity][]activity.RaffleOrder {
	out := make(map[userActivity][]activity.RaffleOrder, len(u))
	for ua, rs := range u {
		slices.SortFunc(rs, func(a, b unusedRow) int {
			return cmp.Or(a.order.OrderTime.Compare(b.order.OrderTime), cmp.Compare(a.id, b.id))
		})
		for _, r := range rs {
			out[ua] = append(out[ua], r.order)
		}
	}
	return out
}

// readUnusedOrders adds to sc one read of the orders still in state create of the users in
// batch that may reuse one, over their tables; the rows land in the map it returns.
func readUnusedOrders(sc *script, batch []*participation) unusedRows {
	type scope struct {
		users      []string
		activities []int64
	}
	tables := map[int]*scope{}
	var order []int
	want := map[userActivity]bool{}
	for _, p := range batch {
		ua := userActivity{p.key.UserID, p.key.ActivityID}
		if !p.reuse || want[ua] {
			continue
		}
		want[ua] = true
		t := tables[p.table]
		if t == nil {
			t = &scope{}
			tables[p.table] = t
			order = append(order, p.table)
		}
		if !slices.Contains(t.users, ua.user) {
			t.users = append(t.users, ua.user)
		}
		if !slices.Contains(t.activities, ua.activity) {
			t.activities = append(t.activities, ua.activity)
		}
	}
	found := unusedRows{}
	if len(want) == 0 {
		return found
	}
	var (
		parts []string
		args  []any
	)
	for _, table := range order {
		t := tables[table]
		parts = append(parts, "SELECT id, "+raffleOrderColumns+" FROM user_raffle_order"+TableSuffix(table)+
			" WHERE user_id IN "+Placeholders(1, len(t.users))+" AND activity_id IN "+Placeholders(1, len(t.activities))+
			" AND order_state = 'create'")
		args = appendStrings(args, t.users)
		for _, a := range t.activities {
			args = append(args, a)
		}
	}
	sc.read("unused orders", strings.Join(parts, " UNION ALL "), args, func(rows *sql.Rows) error {
		var (
			r  unusedRow
			at NullTime
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
	return found
}
