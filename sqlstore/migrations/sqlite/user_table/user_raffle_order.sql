CREATE TABLE IF NOT EXISTS user_raffle_order{{suffix}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  activity_name TEXT NOT NULL DEFAULT '',
  strategy_id INTEGER NOT NULL,
  order_id TEXT NOT NULL,
  order_time DATETIME NOT NULL,
  order_state TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (order_id)
);
CREATE INDEX IF NOT EXISTS idx_user_raffle_order{{suffix}}_user_id_activity_id_order_state ON user_raffle_order{{suffix}} (user_id, activity_id, order_state);
