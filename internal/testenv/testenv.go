// Package testenv gives tests the addresses of the real backends named by the
// BIGMARKET_TEST_* variables, so every package treats a missing backend the same way.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
)

// MySQLDSN returns BIGMARKET_TEST_MYSQL_DSN, a server DSN such as
// "root@tcp(127.0.0.1:3306)/"; tests create and drop their own databases.
func MySQLDSN(t testing.TB) string { return lookup(t, "BIGMARKET_TEST_MYSQL_DSN") }

// RedisAddr returns BIGMARKET_TEST_REDIS_ADDR, such as "127.0.0.1:6379".
func RedisAddr(t testing.TB) string { return lookup(t, "BIGMARKET_TEST_REDIS_ADDR") }

// NATSURL returns BIGMARKET_TEST_NATS_URL, such as "nats://127.0.0.1:4222".
func NATSURL(t testing.TB) string { return lookup(t, "BIGMARKET_TEST_NATS_URL") }

// lookup skips the test when the variable is unset on a developer machine, and fails it
// when CI is set: an integration test that silently skips in CI proves nothing.
func lookup(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set in CI; integration tests must run against the real backend", name)
	}
	t.Skipf("%s not set; skipping integration test", name)
	return ""
}

// Unique returns prefix followed by random hex, for database names, key prefixes and
// stream names that keep concurrent tests apart on shared servers.
func Unique(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}
