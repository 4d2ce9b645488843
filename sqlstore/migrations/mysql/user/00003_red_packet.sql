-- Red packets live in their sender's user database (operator campaigns in the database
-- their id hashes to), so the sender's debit and the packet are one transaction. Items
-- are the pre-split shares; a grabbed item names its grabber once the grab is applied.

-- +goose Up
CREATE TABLE IF NOT EXISTS red_packet (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  packet_id varchar(32) NOT NULL,
  sender_id varchar(32) NOT NULL DEFAULT '',
  total_amount decimal(10,2) NOT NULL,
  item_count int NOT NULL,
  split_mode varchar(8) NOT NULL,
  greeting varchar(128) NOT NULL DEFAULT '',
  eligible_users mediumtext NULL,
  packet_state varchar(16) NOT NULL DEFAULT 'open',
  refund_amount decimal(10,2) NOT NULL DEFAULT 0.00,
  expire_time datetime(3) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_packet_id (packet_id),
  KEY idx_state_expire (packet_state, expire_time, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS red_packet_item (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  packet_id varchar(32) NOT NULL,
  item_index int NOT NULL,
  amount decimal(10,2) NOT NULL,
  user_id varchar(32) NULL,
  grab_time datetime(3) NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_packet_item (packet_id, item_index),
  UNIQUE KEY uq_packet_user (packet_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE IF EXISTS red_packet_item;
DROP TABLE IF EXISTS red_packet;
