-- Red packets live in their sender's user database (operator campaigns in the database
-- their id hashes to), so the sender's debit and the packet are one transaction. Items
-- are the pre-split shares; a grabbed item names its grabber once the grab is applied.

-- +goose Up
CREATE TABLE IF NOT EXISTS red_packet (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  packet_id TEXT NOT NULL,
  sender_id TEXT NOT NULL DEFAULT '',
  total_amount TEXT NOT NULL,
  item_count INTEGER NOT NULL,
  split_mode TEXT NOT NULL,
  greeting TEXT NOT NULL DEFAULT '',
  eligible_users TEXT NULL,
  packet_state TEXT NOT NULL DEFAULT 'open',
  refund_amount TEXT NOT NULL DEFAULT '0.00',
  expire_time DATETIME NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (packet_id)
);
CREATE INDEX IF NOT EXISTS idx_red_packet_state_expire ON red_packet (packet_state, expire_time, id);

CREATE TABLE IF NOT EXISTS red_packet_item (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  packet_id TEXT NOT NULL,
  item_index INTEGER NOT NULL,
  amount TEXT NOT NULL,
  user_id TEXT NULL,
  grab_time DATETIME NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (packet_id, item_index),
  UNIQUE (packet_id, user_id)
);

-- +goose Down
DROP TABLE IF EXISTS red_packet_item;
DROP TABLE IF EXISTS red_packet;
