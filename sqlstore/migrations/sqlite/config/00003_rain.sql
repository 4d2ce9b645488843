-- Red packet rain sessions and their armed prizes. A session row holds the quota version in
-- force (seq_no names it; a quota change is a compare-and-set on it), the prize lines asked
-- for as JSON and, once ended, its ledger as JSON. Every armed prize is a row, so the hot
-- state of a session can be rebuilt from here and rain_win after a Redis loss.

-- +goose Up
CREATE TABLE IF NOT EXISTS rain_session (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL DEFAULT '',
  start_time DATETIME NOT NULL,
  end_time DATETIME NOT NULL,
  user_cap INTEGER NOT NULL,
  burst INTEGER NOT NULL,
  weights TEXT NULL,
  total INTEGER NOT NULL,
  armed INTEGER NOT NULL,
  budget TEXT NULL,
  prizes TEXT NOT NULL,
  seq_no INTEGER NOT NULL,
  session_state TEXT NOT NULL,
  ledger TEXT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_rain_session_end_time ON rain_session (end_time);

CREATE TABLE IF NOT EXISTS rain_prize (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id INTEGER NOT NULL,
  prize_index INTEGER NOT NULL,
  kind TEXT NOT NULL,
  amount TEXT NOT NULL DEFAULT '0.00',
  sku INTEGER NOT NULL DEFAULT 0,
  award_id INTEGER NOT NULL DEFAULT 0,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (session_id, prize_index)
);

-- +goose Down
DROP TABLE IF EXISTS rain_prize;
DROP TABLE IF EXISTS rain_session;
