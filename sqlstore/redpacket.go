package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redpacket"
)

// Packet ids are the home database's index in two digits followed by an order id, so any
// node finds a packet's database without a lookup.
const packetIDLen = 2 + 20

// PacketID implements redpacket.Store: the sender's database, or for an operator packet
// the one the rest of its id hashes to.
func (s *UserStore) PacketID(senderID string, now time.Time) string {
	rest := activity.NewOrderID(now)
	db := 0
	if senderID != "" {
		db = s.router.Route(senderID).DB
	} else {
		h := fnv.New32a()
		h.Write([]byte(rest))
		db = int(h.Sum32() % uint32(len(s.dbs)))
	}
	return fmt.Sprintf("%02d%s", db, rest)
}

// packetHome returns the index of a packet's home database, or ErrNotFound for an id that
// cannot be one of ours.
func (s *UserStore) packetHome(packetID string) (int, error) {
	if len(packetID) != packetIDLen || strings.Trim(packetID, "0123456789") != "" {
		return 0, fmt.Errorf("red packet %q: %w", packetID, redpacket.ErrNotFound)
	}
	db, _ := strconv.Atoi(packetID[:2])
	if db >= len(s.dbs) {
		return 0, fmt.Errorf("red packet %q: %w", packetID, redpacket.ErrNotFound)
	}
	return db, nil
}

var (
	redPacketColumns = []string{"packet_id", "sender_id", "total_amount", "item_count", "split_mode", "greeting",
		"eligible_users", "packet_state", "expire_time", "create_time", "update_time"}
	redPacketItemColumns = []string{"packet_id", "item_index", "amount", "create_time", "update_time"}
)

// SendRedPacket implements redpacket.Store.
func (s *UserStore) SendRedPacket(ctx context.Context, p redpacket.Packet, items []redpacket.Item, debit *credit.Order) error {
	dbi, err := s.packetHome(p.ID)
	if err != nil {
		return err
	}
	if debit != nil {
		if home := s.router.Route(debit.UserID).DB; home != dbi {
			return fmt.Errorf("red packet %s lives in database %d, its sender in %d: %w", p.ID, dbi, home, credit.ErrInvalidTrade)
		}
	}
	now := sqlTime(s.now())
	var eligible any
	if len(p.Eligible) > 0 {
		eligible = strings.Join(p.Eligible, ",")
	}
	rows := make([][]any, len(items))
	for i, it := range items {
		rows[i] = []any{p.ID, it.Index, it.Amount.String(), now, now}
	}
	return s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error {
		if debit != nil {
			if err := s.tradeInTx(ctx, tx, multi, dbi, debit); err != nil {
				return fmt.Errorf("debit sender: %w", err)
			}
		}
		var w script
		w.write("insert red packet", insertSQL("red_packet", redPacketColumns, 1), []any{
			p.ID, p.SenderID, p.Total.String(), p.Count, string(p.Mode), p.Greeting, eligible, string(p.State),
			p.ExpireAt.UTC(), now, now,
		}, 1, func(err error) error { return insertError("red packet", err) })
		// Bounded statements: a packet may hold a thousand items.
		for start := 0; start < len(rows); start += 500 {
			part := rows[start:min(start+500, len(rows))]
			w.write("insert red packet items", insertSQL("red_packet_item", redPacketItemColumns, len(part)), flatten(part), len(part), nil)
		}
		return w.run(ctx, tx, multi)
	})
}

// tradeInTx writes one credit trade of a user of database dbi inside the caller's
// transaction, through the same checks and writes as ApplyCredit; too little credit is
// credit.ErrInsufficient and a repeated business number credit.ErrDuplicate.
func (s *UserStore) tradeInTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, o *credit.Order) error {
	c := &crediting{change: credit.Change{UserID: o.UserID, Order: o}, table: s.router.Route(o.UserID).Table}
	if _, err := s.creditTx(ctx, tx, multi, dbi, []*crediting{c}); err != nil {
		return err
	}
	return c.err
}

// RedPacket implements redpacket.Store.
func (s *UserStore) RedPacket(ctx context.Context, packetID string) (redpacket.Packet, []redpacket.Item, error) {
	dbi, err := s.packetHome(packetID)
	if err != nil {
		return redpacket.Packet{}, nil, err
	}
	db := s.dbs[dbi].SQL
	p := redpacket.Packet{ID: packetID}
	var (
		mode, state       string
		eligible          sql.NullString
		expire, createdAt NullTime
	)
	err = db.QueryRowContext(ctx, "SELECT sender_id, total_amount, item_count, split_mode, greeting, eligible_users, packet_state,"+
		" refund_amount, expire_time, create_time FROM red_packet WHERE packet_id = ?", packetID).
		Scan(&p.SenderID, &p.Total, &p.Count, &mode, &p.Greeting, &eligible, &state, &p.Refund, &expire, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return redpacket.Packet{}, nil, fmt.Errorf("red packet %s: %w", packetID, redpacket.ErrNotFound)
	}
	if err != nil {
		return redpacket.Packet{}, nil, fmt.Errorf("red packet %s: %w", packetID, err)
	}
	p.Mode, p.State, p.ExpireAt, p.Created = redpacket.Mode(mode), redpacket.State(state), expire.Time, createdAt.Time
	if eligible.Valid && eligible.String != "" {
		p.Eligible = strings.Split(eligible.String, ",")
	}
	rows, err := db.QueryContext(ctx, "SELECT item_index, amount, user_id, grab_time FROM red_packet_item WHERE packet_id = ? ORDER BY item_index", packetID)
	if err != nil {
		return redpacket.Packet{}, nil, fmt.Errorf("red packet %s items: %w", packetID, err)
	}
	defer rows.Close()
	items := make([]redpacket.Item, 0, p.Count)
	for rows.Next() {
		var (
			it   redpacket.Item
			user sql.NullString
			at   NullTime
		)
		if err := rows.Scan(&it.Index, &it.Amount, &user, &at); err != nil {
			return redpacket.Packet{}, nil, fmt.Errorf("red packet %s items: %w", packetID, err)
		}
		it.UserID, it.GrabTime = user.String, at.Time
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return redpacket.Packet{}, nil, fmt.Errorf("red packet %s items: %w", packetID, err)
	}
	return p, items, nil
}

// ApplyGrabs implements redpacket.Store: each grab's item names its grabber in the
// packet's home database, then the grabber's credit order (out_business_no
// packetId_userId) goes through ApplyCredit in the grabber's database. Both steps are
// idempotent, so a redelivered grab, or one whose first try stopped between them,
// completes without paying twice.
func (s *UserStore) ApplyGrabs(ctx context.Context, grabs []redpacket.Grab) []error {
	errs := make([]error, len(grabs))
	byDB := make([][]int, len(s.dbs))
	for i, g := range grabs {
		dbi, err := s.packetHome(g.PacketID)
		if err != nil {
			errs[i] = err
			continue
		}
		if err := activity.CheckUserID(g.UserID); err != nil || g.Amount <= 0 {
			errs[i] = fmt.Errorf("grab %s: %w", g.MsgID(), redpacket.ErrInvalid)
			continue
		}
		byDB[dbi] = append(byDB[dbi], i)
	}
	for dbi, idx := range byDB {
		if len(idx) > 0 {
			s.markGrabbed(ctx, dbi, grabs, idx, errs)
		}
	}
	var (
		changes []credit.Change
		which   []int
	)
	for i, g := range grabs {
		if errs[i] != nil {
			continue
		}
		o := &credit.Order{UserID: g.UserID, OrderID: activity.NewOrderID(s.now()), Name: redpacket.NameGrab,
			Type: credit.Forward, Amount: g.Amount, OutBusinessNo: g.BusinessNo()}
		changes = append(changes, credit.Change{UserID: g.UserID, Order: o})
		which = append(which, i)
	}
	for j, err := range s.ApplyCredit(ctx, changes) {
		if err != nil && !errors.Is(err, credit.ErrDuplicate) {
			errs[which[j]] = err
		}
	}
	return errs
}

// markGrabbed records the grabs idx of database dbi on their items in one transaction of
// two round trips on MySQL: the items are read locked, then every item still free is
// given to its grabber. A grab already recorded is done; one the items contradict gets
// ErrConflict. When a unique key refuses the batch, the grabs go one at a time to find
// the one at fault; any other failure is every grab's.
func (s *UserStore) markGrabbed(ctx context.Context, dbi int, grabs []redpacket.Grab, idx []int, errs []error) {
	type key struct {
		packet string
		index  int
	}
	type held struct {
		user   sql.NullString
		amount money.Cents
	}
	db := s.dbs[dbi]
	err := s.inGroupTx(ctx, db, func(tx *sql.Tx, multi bool) error {
		items := map[key]held{}
		args := make([]any, 0, 2*len(idx))
		for _, i := range idx {
			errs[i] = nil
			args = append(args, grabs[i].PacketID, grabs[i].Index)
		}
		var reads script
		reads.read("lock red packet items", "SELECT packet_id, item_index, user_id, amount FROM red_packet_item"+
			" WHERE (packet_id, item_index) IN ("+strings.TrimSuffix(strings.Repeat("(?, ?), ", len(idx)), ", ")+")"+db.Dialect.ForUpdate(),
			args, func(rows *sql.Rows) error {
				var (
					k key
					h held
				)
				if err := rows.Scan(&k.packet, &k.index, &h.user, &h.amount); err != nil {
					return err
				}
				items[k] = h
				return nil
			})
		if err := reads.run(ctx, tx, multi); err != nil {
			return err
		}
		now := sqlTime(s.now())
		var writes script
		for _, i := range idx {
			g := grabs[i]
			h, ok := items[key{g.PacketID, g.Index}]
			switch {
			case !ok:
				errs[i] = fmt.Errorf("grab %s of item %d: no such item: %w", g.MsgID(), g.Index, redpacket.ErrConflict)
			case h.amount != g.Amount || (h.user.Valid && h.user.String != g.UserID):
				errs[i] = fmt.Errorf("grab %s of item %d (%s) but the item is %q's of %s: %w", g.MsgID(), g.Index, g.Amount, h.user.String, h.amount, redpacket.ErrConflict)
			case h.user.Valid: // recorded before
			default:
				writes.write("record red packet grab", "UPDATE red_packet_item SET user_id = ?, grab_time = ?, update_time = ?"+
					" WHERE packet_id = ? AND item_index = ? AND user_id IS NULL",
					[]any{g.UserID, g.Time.UTC().Truncate(time.Millisecond), now, g.PacketID, g.Index}, 1,
					func(err error) error { return insertError("red packet grab", err) })
				h.user = sql.NullString{String: g.UserID, Valid: true}
				items[key{g.PacketID, g.Index}] = h // a repeat in the batch is then "recorded before"
			}
		}
		return writes.run(ctx, tx, multi)
	})
	if err == nil {
		return
	}
	conflict := IsDuplicate(err) || errors.Is(err, errConflict) // a grabber holds another item of the packet
	if conflict && len(idx) > 1 {
		for _, i := range idx { // find the grab at fault
			s.markGrabbed(ctx, dbi, grabs, []int{i}, errs)
		}
		return
	}
	if conflict {
		err = fmt.Errorf("grab %s: %w (%w)", grabs[idx[0]].MsgID(), redpacket.ErrConflict, err)
	}
	for _, i := range idx { // the database failed the batch: each grab is retried with its event
		errs[i] = err
	}
}

// ExpiredRedPackets implements redpacket.Store: up to limit open packets whose expiry is
// not after now, after the cursor, in (database, row id) order. It pages by the row id
// (never OFFSET), so a sweep costs one index range read per page however many packets
// were refunded before.
func (s *UserStore) ExpiredRedPackets(ctx context.Context, now time.Time, after redpacket.Cursor, limit int) ([]string, redpacket.Cursor, error) {
	var ids []string
	cur := after
	for ; cur.DB < len(s.dbs) && len(ids) < limit; cur = (redpacket.Cursor{DB: cur.DB + 1}) {
		rows, err := s.dbs[cur.DB].SQL.QueryContext(ctx, "SELECT id, packet_id FROM red_packet WHERE packet_state = 'open'"+
			" AND expire_time <= ? AND id > ? ORDER BY id LIMIT ?", now.UTC(), cur.Row, limit-len(ids))
		if err != nil {
			return nil, after, fmt.Errorf("expired red packets of database %d: %w", cur.DB, err)
		}
		n := 0
		for rows.Next() {
			var id string
			if err := rows.Scan(&cur.Row, &id); err != nil {
				rows.Close()
				return nil, after, fmt.Errorf("expired red packets of database %d: %w", cur.DB, err)
			}
			ids = append(ids, id)
			n++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, after, fmt.Errorf("expired red packets of database %d: %w", cur.DB, err)
		}
		if len(ids) == limit {
			return ids, cur, nil // this database may hold more after cur.Row
		}
	}
	return ids, cur, nil
}

// RefundRedPacket implements redpacket.Store: in one transaction of the home database it
// locks the open packet, sums its recorded grabs and credits the sender total − grabbed
// (forward order, out_business_no refund_packetId), marking the packet refunded (closed
// when nothing is left or there is no sender). A packet no longer open is left as it is,
// so the refund happens exactly once however many sweeps reach it.
func (s *UserStore) RefundRedPacket(ctx context.Context, packetID string) (refund money.Cents, done bool, err error) {
	dbi, err := s.packetHome(packetID)
	if err != nil {
		return 0, false, err
	}
	d := s.dbs[dbi].Dialect
	err = s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error {
		refund, done = 0, false
		var (
			sender, state string
			total         money.Cents
		)
		err := tx.QueryRowContext(ctx, "SELECT sender_id, total_amount, packet_state FROM red_packet WHERE packet_id = ?"+d.ForUpdate(),
			packetID).Scan(&sender, &total, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("red packet %s: %w", packetID, redpacket.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("lock red packet %s: %w", packetID, err)
		}
		if redpacket.State(state) != redpacket.StateOpen {
			return nil
		}
		var grabbed money.Cents
		rows, err := tx.QueryContext(ctx, "SELECT amount FROM red_packet_item WHERE packet_id = ? AND user_id IS NOT NULL", packetID)
		if err != nil {
			return fmt.Errorf("grabs of red packet %s: %w", packetID, err)
		}
		for rows.Next() {
			var a money.Cents
			if err := rows.Scan(&a); err != nil {
				rows.Close()
				return fmt.Errorf("grabs of red packet %s: %w", packetID, err)
			}
			grabbed += a
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("grabs of red packet %s: %w", packetID, err)
		}
		refund = total - grabbed
		next := redpacket.StateClosed
		if sender != "" && refund > 0 {
			next = redpacket.StateRefunded
			now := s.now()
			o := &credit.Order{UserID: sender, OrderID: activity.NewOrderID(now), Name: redpacket.NameRefund, Type: credit.Forward,
				Amount: refund, OutBusinessNo: redpacket.RefundBusinessNo(packetID)}
			if err := s.tradeInTx(ctx, tx, multi, dbi, o); err != nil {
				return fmt.Errorf("refund red packet %s: %w", packetID, err)
			}
		} else {
			refund = 0
		}
		if _, err := tx.ExecContext(ctx, "UPDATE red_packet SET packet_state = ?, refund_amount = ?, update_time = ? WHERE packet_id = ?",
			string(next), refund.String(), sqlTime(s.now()), packetID); err != nil {
			return fmt.Errorf("close red packet %s: %w", packetID, err)
		}
		done = true
		return nil
	})
	return refund, done, err
}

// PacketSummary is a red packet with how much of it was grabbed, for the operator console.
type PacketSummary struct {
	Packet        redpacket.Packet
	Grabbed       int         // items grabbed (their grabs applied)
	GrabbedAmount money.Cents // the sum of those items
}

// RecentRedPackets returns the newest limit red packets of every user database, users'
// and operators' alike, newest first (to the second): one indexed read of the newest limit per database
// (by primary key) and one of their items, so its cost is bounded by limit times the
// databases, not by how many packets there are.
func (s *UserStore) RecentRedPackets(ctx context.Context, limit int) ([]PacketSummary, error) {
	var out []PacketSummary
	for dbi, db := range s.dbs {
		byID := map[string]int{}
		first := len(out)
		err := queryEach(ctx, db.SQL, "SELECT packet_id, sender_id, total_amount, item_count, split_mode, packet_state, refund_amount,"+
			" expire_time, create_time FROM red_packet ORDER BY id DESC LIMIT ?", []any{limit}, func(rows *sql.Rows) error {
			var (
				p                 redpacket.Packet
				mode, state       string
				expire, createdAt NullTime
			)
			if err := rows.Scan(&p.ID, &p.SenderID, &p.Total, &p.Count, &mode, &state, &p.Refund, &expire, &createdAt); err != nil {
				return err
			}
			p.Mode, p.State, p.ExpireAt, p.Created = redpacket.Mode(mode), redpacket.State(state), expire.Time, createdAt.Time
			byID[p.ID] = len(out)
			out = append(out, PacketSummary{Packet: p})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("recent red packets of user database %02d: %w", dbi+1, err)
		}
		if len(out) == first {
			continue
		}
		ids := make([]any, 0, len(out)-first)
		for _, p := range out[first:] {
			ids = append(ids, p.Packet.ID)
		}
		q := "SELECT packet_id, COUNT(*), COALESCE(SUM(amount), 0) FROM red_packet_item WHERE user_id IS NOT NULL AND packet_id IN (?" +
			strings.Repeat(",?", len(ids)-1) + ") GROUP BY packet_id"
		err = queryEach(ctx, db.SQL, q, ids, func(rows *sql.Rows) error {
			var (
				id     string
				n      int
				amount money.Cents
			)
			if err := rows.Scan(&id, &n, &amount); err != nil {
				return err
			}
			if i, ok := byID[id]; ok {
				out[i].Grabbed, out[i].GrabbedAmount = n, amount
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("recent red packets' items of user database %02d: %w", dbi+1, err)
		}
	}
	// create_time holds whole seconds: within one, a database's packets stay in the
	// order it wrote them (newest first, as read).
	slices.SortStableFunc(out, func(a, b PacketSummary) int { return b.Packet.Created.Compare(a.Packet.Created) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
