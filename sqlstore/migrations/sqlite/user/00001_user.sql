-- User database (big_market_NN): the tables that exist once per database. The sharded
-- tables (_000 …) are created by MigrateUser from ../user_table for the configured count.
-- SQLite: decimal columns are TEXT ("0.0300", "200.00") so they read back exactly; DATETIME
-- columns hold "YYYY-MM-DD HH:MM:SS" in UTC.

-- +goose Up
CREATE TABLE IF NOT EXISTS raffle_activity_account (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  total_count INTEGER NOT NULL,
  total_count_surplus INTEGER NOT NULL,
  day_count INTEGER NOT NULL,
  day_count_surplus INTEGER NOT NULL,
  month_count INTEGER NOT NULL,
  month_count_surplus INTEGER NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (user_id, activity_id)
);

CREATE TABLE IF NOT EXISTS raffle_activity_account_day (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  day TEXT NOT NULL,
  day_count INTEGER NOT NULL,
  day_count_surplus INTEGER NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (user_id, activity_id, day)
);

CREATE TABLE IF NOT EXISTS raffle_activity_account_month (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  month TEXT NOT NULL,
  month_count INTEGER NOT NULL,
  month_count_surplus INTEGER NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (user_id, activity_id, month)
);

CREATE TABLE IF NOT EXISTS user_credit_account (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  total_amount TEXT NOT NULL DEFAULT '0.00',
  available_amount TEXT NOT NULL DEFAULT '0.00',
  account_status TEXT NOT NULL DEFAULT 'open',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (user_id)
);

CREATE TABLE IF NOT EXISTS task (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  message_id TEXT NOT NULL,
  message TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'create',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (message_id)
);
CREATE INDEX IF NOT EXISTS idx_task_state_create_time ON task (state, create_time);

-- +goose Down
DROP TABLE IF EXISTS task;
DROP TABLE IF EXISTS user_credit_account;
DROP TABLE IF EXISTS raffle_activity_account_month;
DROP TABLE IF EXISTS raffle_activity_account_day;
DROP TABLE IF EXISTS raffle_activity_account;
