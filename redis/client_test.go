package redis

import (
	"context"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestOpenChoosesClientKind(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		name    string
		opts    Options
		cluster bool
	}{
		{"one address", Options{Addrs: []string{e.Addr()}}, false},
		{"cluster flag", Options{Addrs: []string{e.Addr()}, Cluster: true}, true},
		{"several addresses", Options{Addrs: []string{e.Addr(), e.Addr()}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, isCluster := c.(*goredis.ClusterClient)
			if isCluster != tc.cluster {
				t.Fatalf("got %T, want cluster=%v", c, tc.cluster)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Error("open without address succeeded")
	}
	if _, err := Open(context.Background(), Options{Addrs: []string{"127.0.0.1:6379", " "}}); err == nil {
		t.Error("open with an empty address succeeded")
	}
	// Port 1 on loopback refuses connections.
	_, err := Open(context.Background(), Options{Addrs: []string{"127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("open of a closed port: %v, want an error naming the address", err)
	}
}

func TestEmbeddedCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), Options{Addrs: []string{e.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close() // idempotent
}
