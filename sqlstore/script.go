package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// script is the statements one step of a grouped transaction sends. On a MySQL connection
// that accepts several statements per query (DB.multi) they go in one round trip; on
// SQLite, in process, one by one. Either way each statement's outcome is checked: a read's
// rows go to its handler, a write's affected rows are compared with what it must change
// (on MySQL through a SELECT ROW_COUNT() after it, which also tells which statement
// failed), and a failure is reported through the statement's own error mapping.
type script struct {
	stmts []scriptStmt
}

type scriptStmt struct {
	name  string
	query string
	args  []any
	// read handles each row of a SELECT; nil for a write.
	read func(*sql.Rows) error
	// want is how many rows a write must change; -1 for any.
	want int
	// fail maps the statement's error (nil: wrap with name).
	fail func(error) error
}

// read adds a SELECT whose rows go to fn.
func (s *script) read(name, query string, args []any, fn func(*sql.Rows) error) {
	s.stmts = append(s.stmts, scriptStmt{name: name, query: query, args: args, read: fn, want: -1})
}

// write adds a statement that must change want rows (-1: any), with fail mapping its error.
func (s *script) write(name, query string, args []any, want int, fail func(error) error) {
	s.stmts = append(s.stmts, scriptStmt{name: name, query: query, args: args, want: want, fail: fail})
}

func (st *scriptStmt) error(err error) error {
	if st.fail != nil {
		return st.fail(err)
	}
	return fmt.Errorf("%s: %w", st.name, err)
}

// check compares a write's changed rows with what it must change; fewer or more means a
// row changed under a concurrent writer, and the transaction is retried.
func (st *scriptStmt) check(n int64) error {
	if st.want >= 0 && n != int64(st.want) {
		return fmt.Errorf("%s changed %d rows of %d: %w", st.name, n, st.want, errConflict)
	}
	return nil
}

// run sends the script in tx; multi says tx's connection takes several statements per
// query.
func (s *script) run(ctx context.Context, tx *sql.Tx, multi bool) error {
	if len(s.stmts) == 0 {
		return nil
	}
	if multi {
		return s.runMulti(ctx, tx)
	}
	for i := range s.stmts {
		st := &s.stmts[i]
		if st.read != nil {
			if err := queryEach(ctx, tx, st.query, st.args, st.read); err != nil {
				return st.error(err)
			}
			continue
		}
		res, err := tx.ExecContext(ctx, st.query, st.args...)
		if err != nil {
			return st.error(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return st.error(err)
		}
		if err := st.check(n); err != nil {
			return err
		}
	}
	return nil
}

// runMulti sends every statement in one query, each write followed by SELECT ROW_COUNT(),
// so that every statement yields exactly one result set, read in order.
func (s *script) runMulti(ctx context.Context, tx *sql.Tx) error {
	var (
		b    strings.Builder
		args []any
	)
	for i, st := range s.stmts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(st.query)
		if st.read == nil {
			b.WriteString("; SELECT ROW_COUNT()")
		}
		args = append(args, st.args...)
	}
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return s.stmts[0].error(err)
	}
	defer rows.Close()
	for i := range s.stmts {
		st := &s.stmts[i]
		if i > 0 && !rows.NextResultSet() {
			err := rows.Err()
			if err == nil {
				err = errors.New("no result set")
			}
			return st.error(err)
		}
		if st.read != nil {
			for rows.Next() {
				if err := st.read(rows); err != nil {
					return st.error(err)
				}
			}
			if err := rows.Err(); err != nil {
				return st.error(err)
			}
			continue
		}
		var n int64
		if !rows.Next() {
			return st.error(fmt.Errorf("no ROW_COUNT: %w", rows.Err()))
		}
		if err := rows.Scan(&n); err != nil {
			return st.error(err)
		}
		if err := st.check(n); err != nil {
			return err
		}
	}
	return rows.Close()
}
