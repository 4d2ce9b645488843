CREATE TABLE IF NOT EXISTS raffle_activity_order{{suffix}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  sku INTEGER NOT NULL,
  activity_id INTEGER NOT NULL,
  activity_name TEXT NOT NULL DEFAULT '',
  strategy_id INTEGER NOT NULL,
  order_id TEXT NOT NULL,
  order_time DATETIME NOT NULL,
  total_count INTEGER NOT NULL,
  day_count INTEGER NOT NULL,
  month_count INTEGER NOT NULL,
  pay_amount TEXT NOT NULL DEFAULT '0.00',
  state TEXT NOT NULL,
  out_business_no TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (order_id),
  UNIQUE (out_business_no)
);
CREATE INDEX IF NOT EXISTS idx_raffle_activity_order{{suffix}}_user_id_activity_id_state ON raffle_activity_order{{suffix}} (user_id, activity_id, state);
CREATE INDEX IF NOT EXISTS idx_raffle_activity_order{{suffix}}_sku ON raffle_activity_order{{suffix}} (sku);
