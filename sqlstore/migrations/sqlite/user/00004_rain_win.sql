-- Red packet rain wins live in the winner's user database (one table per database, like
-- red_packet), so that recording a win and crediting it are one transaction. A win is
-- keyed by (session_id, user_id, win_no), its event's message id; a prize is won once per
-- database (the second unique key), and verify checks it across the databases.

-- +goose Up
CREATE TABLE IF NOT EXISTS rain_win (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  win_no INTEGER NOT NULL,
  prize_index INTEGER NOT NULL,
  kind TEXT NOT NULL,
  amount TEXT NOT NULL DEFAULT '0.00',
  sku INTEGER NOT NULL DEFAULT 0,
  award_id INTEGER NOT NULL DEFAULT 0,
  win_time DATETIME NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (session_id, user_id, win_no),
  UNIQUE (session_id, prize_index)
);
CREATE INDEX IF NOT EXISTS idx_rain_win_user_session ON rain_win (user_id, session_id);

-- +goose Down
DROP TABLE IF EXISTS rain_win;
