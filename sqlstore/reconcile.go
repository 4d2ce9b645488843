package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redpacket"
)

// Ledger reads the rows reconcile's checks need: it is the reconcile.Source of a
// deployment's config database and user databases. sqlstore imports reconcile (a pure
// package of checks over the domains' types and its own row types), never the reverse.
type Ledger struct {
	Config *DB
	Users  []*DB
	Router Router
}

var _ reconcile.Source = Ledger{}

// Shape returns the number of user databases and of tables in each.
func (l Ledger) Shape() (dbs, tables int) { return len(l.Users), l.Router.Tables }

// Route returns the user database and table suffix of userID's rows.
func (l Ledger) Route(userID string) (db int, table string) {
	r := l.Router.Route(userID)
	return r.DB, r.Suffix
}

// Awards reads the config database's awards by id.
func (l Ledger) Awards(ctx context.Context) (map[int64]reconcile.Award, error) {
	return l.Config.reconcileAwards(ctx)
}

// AwardRecords reads the award records of a table from since on, with their tasks and
// credit orders.
func (l Ledger) AwardRecords(ctx context.Context, db, table int, since time.Time) ([]reconcile.AwardRecord, error) {
	return l.Users[db].reconcileAwardRecords(ctx, table, since)
}

// PrizeCredits reads the prize credit orders of a table from since on.
func (l Ledger) PrizeCredits(ctx context.Context, db, table int, since time.Time) ([]reconcile.PrizeCredit, error) {
	return l.Users[db].reconcilePrizeCredits(ctx, table, since)
}

// Exchanges reads every paid SKU exchange of a table with its payment.
func (l Ledger) Exchanges(ctx context.Context, db, table int) ([]reconcile.Exchange, error) {
	return l.Users[db].reconcileExchanges(ctx, table)
}

// Rebates reads the behaviour rebates of a table created from since on.
func (l Ledger) Rebates(ctx context.Context, db, table int, since time.Time) ([]reconcile.Rebate, error) {
	return l.Users[db].reconcileRebates(ctx, table, since)
}

// CreditOrders reads every credit order of a table.
func (l Ledger) CreditOrders(ctx context.Context, db, table int) ([]reconcile.CreditOrder, error) {
	return l.Users[db].reconcileCreditOrders(ctx, db, table)
}

// Tasks reads a user database's tasks created from since on.
func (l Ledger) Tasks(ctx context.Context, db int, since time.Time) ([]reconcile.TaskRow, error) {
	return l.Users[db].reconcileTasks(ctx, since)
}

// Accounts reads a user database's credit accounts.
func (l Ledger) Accounts(ctx context.Context, db int) ([]reconcile.Account, error) {
	return l.Users[db].reconcileAccounts(ctx)
}

// PacketsSince reads a user database's red packets created from since on, with their items.
func (l Ledger) PacketsSince(ctx context.Context, db int, since time.Time) ([]reconcile.Packet, error) {
	return l.Users[db].reconcilePacketsSince(ctx, db, since)
}

// Packet reads the red packet id, with its items, if user database db holds it.
func (l Ledger) Packet(ctx context.Context, db int, id string) ([]reconcile.Packet, error) {
	return l.Users[db].reconcilePacket(ctx, db, id)
}

// queryRows runs a query and calls scan for each row.
func queryRows(ctx context.Context, db *sql.DB, what, query string, scan func(*sql.Rows) error, args ...any) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("scan %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query %s: %w", what, err)
	}
	return nil
}

// reconcileAwards reads the config database's awards by id.
func (db *DB) reconcileAwards(ctx context.Context) (map[int64]reconcile.Award, error) {
	awards := map[int64]reconcile.Award{}
	err := queryRows(ctx, db.SQL, "awards", "SELECT award_id, award_key, award_config FROM award", func(rows *sql.Rows) error {
		var (
			id int64
			a  reconcile.Award
		)
		if err := rows.Scan(&id, &a.Key, &a.Config); err != nil {
			return err
		}
		awards[id] = a
		return nil
	})
	return awards, err
}

// joined fills o from the nullable columns of an outer join.
func joined(o *reconcile.Joined, userID, tradeType, tradeName, amount sql.NullString, created NullTime) error {
	*o = reconcile.Joined{Found: userID.Valid}
	if !o.Found {
		return nil
	}
	o.UserID, o.Type, o.Name, o.Created = userID.String, credit.TradeType(tradeType.String), tradeName.String, created.Time
	return o.Amount.Scan(amount.String)
}

// reconcileAwardRecords reads the award records of table from since on, with their tasks
// and credit orders.
func (db *DB) reconcileAwardRecords(ctx context.Context, table int, since time.Time) ([]reconcile.AwardRecord, error) {
	sfx := TableSuffix(table)
	var out []reconcile.AwardRecord
	err := queryRows(ctx, db.SQL, "award records"+sfx, `
		SELECT r.user_id, r.order_id, r.award_id, r.award_state, r.award_time,
			t.user_id, t.topic, t.message,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time
		FROM user_award_record`+sfx+` r
		LEFT JOIN task t ON t.message_id = r.order_id
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = r.order_id
		WHERE r.award_time >= ?`, func(rows *sql.Rows) error {
		var (
			r                                reconcile.AwardRecord
			state                            string
			awardTime, creditTime            NullTime
			taskUser, taskTopic, taskMessage sql.NullString
			cUser, cType, cName, cAmount     sql.NullString
		)
		if err := rows.Scan(&r.UserID, &r.OrderID, &r.AwardID, &state, &awardTime, &taskUser, &taskTopic, &taskMessage,
			&cUser, &cType, &cName, &cAmount, &creditTime); err != nil {
			return err
		}
		r.State, r.AwardTime = award.State(state), awardTime.Time
		r.Task = reconcile.Task{Found: taskUser.Valid, UserID: taskUser.String, Topic: taskTopic.String, Message: taskMessage.String}
		if err := joined(&r.Credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of award record %s: %w", r.OrderID, err)
		}
		out = append(out, r)
		return nil
	}, since)
	return out, err
}

// reconcilePrizeCredits reads the prize credit orders of table from since on, with
// whether an award record of their user explains them.
func (db *DB) reconcilePrizeCredits(ctx context.Context, table int, since time.Time) ([]reconcile.PrizeCredit, error) {
	sfx := TableSuffix(table)
	var out []reconcile.PrizeCredit
	err := queryRows(ctx, db.SQL, "prize credit orders"+sfx, `
		SELECT c.user_id, c.order_id, c.out_business_no, c.trade_type, c.trade_amount, r.order_id
		FROM user_credit_order`+sfx+` c
		LEFT JOIN user_award_record`+sfx+` r ON r.order_id = c.out_business_no AND r.user_id = c.user_id
		WHERE c.trade_name = ? AND c.create_time >= ?`, func(rows *sql.Rows) error {
		var (
			c         reconcile.PrizeCredit
			tradeType string
			record    sql.NullString
		)
		if err := rows.Scan(&c.UserID, &c.OrderID, &c.BusinessNo, &tradeType, &c.Amount, &record); err != nil {
			return err
		}
		c.Type, c.RecordFound = credit.TradeType(tradeType), record.Valid
		out = append(out, c)
		return nil
	}, credit.NameAward, since)
	return out, err
}

// reconcileExchanges reads every paid SKU exchange of table with its payment.
func (db *DB) reconcileExchanges(ctx context.Context, table int) ([]reconcile.Exchange, error) {
	sfx := TableSuffix(table)
	var out []reconcile.Exchange
	err := queryRows(ctx, db.SQL, "activity orders"+sfx, `
		SELECT o.user_id, o.order_id, o.out_business_no, o.pay_amount, o.state, o.order_time,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time
		FROM raffle_activity_order`+sfx+` o
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = o.out_business_no`, func(rows *sql.Rows) error {
		var (
			e                            reconcile.Exchange
			payText, state               string
			orderTime, creditTime        NullTime
			cUser, cType, cName, cAmount sql.NullString
		)
		if err := rows.Scan(&e.UserID, &e.OrderID, &e.BusinessNo, &payText, &state, &orderTime,
			&cUser, &cType, &cName, &cAmount, &creditTime); err != nil {
			return err
		}
		if err := e.Pay.Scan(payText); err != nil {
			return fmt.Errorf("pay amount of activity order %s: %w", e.OrderID, err)
		}
		if e.Pay <= 0 {
			return nil
		}
		if err := joined(&e.Credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of activity order %s: %w", e.OrderID, err)
		}
		e.State, e.OrderTime = activity.RechargeState(state), orderTime.Time
		out = append(out, e)
		return nil
	})
	return out, err
}

// reconcileRebates reads the behaviour rebates of table created from since to settled,
// with what they granted.
func (db *DB) reconcileRebates(ctx context.Context, table int, since time.Time) ([]reconcile.Rebate, error) {
	sfx := TableSuffix(table)
	var out []reconcile.Rebate
	err := queryRows(ctx, db.SQL, "rebate orders"+sfx, `
		SELECT r.user_id, r.order_id, r.rebate_type, r.rebate_config, r.biz_id, r.create_time,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time, o.user_id
		FROM user_behavior_rebate_order`+sfx+` r
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = r.biz_id
		LEFT JOIN raffle_activity_order`+sfx+` o ON o.out_business_no = r.biz_id
		WHERE r.create_time >= ?`, func(rows *sql.Rows) error {
		var (
			r                                          reconcile.Rebate
			rebateType                                 string
			cUser, cType, cName, cAmount, activityUser sql.NullString
			created, creditTime                        NullTime
		)
		if err := rows.Scan(&r.UserID, &r.OrderID, &rebateType, &r.Config, &r.BizID, &created,
			&cUser, &cType, &cName, &cAmount, &creditTime, &activityUser); err != nil {
			return err
		}
		if err := joined(&r.Credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of rebate %s: %w", r.BizID, err)
		}
		r.Type, r.Created, r.ActivityUser = rebate.Type(rebateType), created.Time, activityUser.String
		out = append(out, r)
		return nil
	}, since)
	return out, err
}

// reconcileTasks reads the tasks created from since on.
func (db *DB) reconcileTasks(ctx context.Context, since time.Time) ([]reconcile.TaskRow, error) {
	var out []reconcile.TaskRow
	err := queryRows(ctx, db.SQL, "tasks", `SELECT user_id, topic, message_id, state, create_time FROM task WHERE create_time >= ?`, func(rows *sql.Rows) error {
		var (
			t       reconcile.TaskRow
			state   string
			created NullTime
		)
		if err := rows.Scan(&t.UserID, &t.Topic, &t.MessageID, &state, &created); err != nil {
			return err
		}
		t.State, t.Created = outbox.State(state), created.Time
		out = append(out, t)
		return nil
	}, since)
	return out, err
}

// reconcileCreditOrders reads every credit order of table; dbIndex is the database's
// place among the user databases, kept on each order.
func (db *DB) reconcileCreditOrders(ctx context.Context, dbIndex, table int) ([]reconcile.CreditOrder, error) {
	sfx := TableSuffix(table)
	var out []reconcile.CreditOrder
	err := queryRows(ctx, db.SQL, "credit orders"+sfx, `SELECT user_id, order_id, trade_name, trade_type, trade_amount, out_business_no, create_time
		FROM user_credit_order`+sfx, func(rows *sql.Rows) error {
		var (
			o                 = reconcile.CreditOrder{DB: dbIndex, Table: sfx}
			tradeType, amount string
			created           NullTime
		)
		if err := rows.Scan(&o.UserID, &o.OrderID, &o.Name, &tradeType, &amount, &o.BusinessNo, &created); err != nil {
			return err
		}
		if err := o.Amount.Scan(amount); err != nil {
			return fmt.Errorf("amount of credit order %s: %w", o.OrderID, err)
		}
		o.Type, o.Created = credit.TradeType(tradeType), created.Time
		out = append(out, o)
		return nil
	})
	return out, err
}

// reconcileAccounts reads every credit account.
func (db *DB) reconcileAccounts(ctx context.Context) ([]reconcile.Account, error) {
	var out []reconcile.Account
	err := queryRows(ctx, db.SQL, "credit accounts", `SELECT user_id, total_amount, available_amount FROM user_credit_account`, func(rows *sql.Rows) error {
		var (
			a                        reconcile.Account
			totalText, availableText string
		)
		if err := rows.Scan(&a.UserID, &totalText, &availableText); err != nil {
			return err
		}
		if err := a.Total.Scan(totalText); err != nil {
			return fmt.Errorf("total of credit account %s: %w", a.UserID, err)
		}
		if err := a.Available.Scan(availableText); err != nil {
			return fmt.Errorf("available of credit account %s: %w", a.UserID, err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// Conditions reconcilePackets selects by: fixed text, the value a parameter.
const (
	packetsSince = "p.create_time >= ?"
	packetByID   = "p.packet_id = ?"
)

// reconcilePacketsSince reads the red packets created from since on, with their items;
// dbIndex is the database's place among the user databases.
func (db *DB) reconcilePacketsSince(ctx context.Context, dbIndex int, since time.Time) ([]reconcile.Packet, error) {
	return db.reconcilePackets(ctx, dbIndex, packetsSince, since)
}

// reconcilePacket reads the red packet id, with its items, if this database holds it.
func (db *DB) reconcilePacket(ctx context.Context, dbIndex int, id string) ([]reconcile.Packet, error) {
	return db.reconcilePackets(ctx, dbIndex, packetByID, id)
}

func (db *DB) reconcilePackets(ctx context.Context, dbIndex int, where string, arg any) ([]reconcile.Packet, error) {
	var out []reconcile.Packet
	index := map[string]int{}
	err := queryRows(ctx, db.SQL, "red packets", `SELECT p.packet_id, p.sender_id, p.total_amount, p.item_count, p.packet_state,
		p.refund_amount, p.create_time, p.update_time FROM red_packet p WHERE `+where, func(rows *sql.Rows) error {
		var (
			p                = reconcile.Packet{DB: dbIndex}
			state            string
			created, updated NullTime
		)
		if err := rows.Scan(&p.ID, &p.SenderID, &p.Total, &p.Count, &state, &p.Refund, &created, &updated); err != nil {
			return err
		}
		p.State, p.Created, p.Updated = redpacket.State(state), created.Time, updated.Time
		if _, dup := index[p.ID]; !dup {
			index[p.ID] = len(out)
			out = append(out, p)
		}
		return nil
	}, arg)
	if err != nil || len(out) == 0 {
		return out, err
	}
	err = queryRows(ctx, db.SQL, "red packet items", `SELECT i.packet_id, i.item_index, i.amount, i.user_id, i.grab_time
		FROM red_packet_item i JOIN red_packet p ON p.packet_id = i.packet_id WHERE `+where+` ORDER BY i.packet_id, i.item_index`, func(rows *sql.Rows) error {
		var (
			id       string
			it       reconcile.Item
			amount   money.Cents
			userID   sql.NullString
			grabTime NullTime
		)
		if err := rows.Scan(&id, &it.Index, &amount, &userID, &grabTime); err != nil {
			return err
		}
		it.Amount, it.UserID, it.GrabTime = amount, userID.String, grabTime.Time
		if i, ok := index[id]; ok {
			out[i].Items = append(out[i].Items, it)
		}
		return nil
	}, arg)
	return out, err
}

// MinSurpluses reads the minimum of every surplus column: the quota accounts in each user
// database, the award and SKU stock in the config database.
func MinSurpluses(ctx context.Context, configDB *DB, userDBs []*DB) ([]reconcile.SurplusMin, error) {
	type source struct {
		table   string
		columns []string
		dbs     []*DB
		names   []string
	}
	var userNames []string
	for i := range userDBs {
		userNames = append(userNames, fmt.Sprintf("user database %02d", i+1))
	}
	config := []*DB{configDB}
	sources := []source{
		{"raffle_activity_account", []string{"total_count_surplus", "day_count_surplus", "month_count_surplus"}, userDBs, userNames},
		{"raffle_activity_account_day", []string{"day_count_surplus"}, userDBs, userNames},
		{"raffle_activity_account_month", []string{"month_count_surplus"}, userDBs, userNames},
		{"strategy_award", []string{"award_count_surplus"}, config, []string{"config database"}},
		{"raffle_activity_sku", []string{"stock_count_surplus"}, config, []string{"config database"}},
	}
	var out []reconcile.SurplusMin
	for _, s := range sources {
		mins := make([]reconcile.SurplusMin, len(s.columns))
		for i, c := range s.columns {
			mins[i].Column = s.table + "." + c
		}
		for d, db := range s.dbs {
			// Fixed table and column names only.
			var sel []string
			for _, c := range s.columns {
				sel = append(sel, "MIN("+c+")")
			}
			vals := make([]sql.NullInt64, len(s.columns))
			dest := make([]any, len(vals))
			for i := range vals {
				dest[i] = &vals[i]
			}
			if err := db.SQL.QueryRowContext(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+s.table).Scan(dest...); err != nil {
				return nil, fmt.Errorf("min surplus of %s in %s: %w", s.table, s.names[d], err)
			}
			for i, val := range vals {
				if val.Valid && (!mins[i].Rows || val.Int64 < mins[i].Min) {
					mins[i].Rows, mins[i].Min, mins[i].Where = true, val.Int64, s.names[d]
				}
			}
		}
		out = append(out, mins...)
	}
	return out, nil
}
