-- The outbox is read per user (a user's tasks) as well as by state; index both.

-- +goose Up
CREATE INDEX idx_task_user_id ON task (user_id);

-- +goose Down
DROP INDEX idx_task_user_id ON task;
