package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

func TestParseWeights(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "", want: nil},
		{in: " ", want: nil},
		{in: "1,2,3", want: []int{1, 2, 3}},
		{in: " 0, 5 ", want: []int{0, 5}},
		{in: "1,,2", bad: true},
		{in: "1,-2", bad: true},
		{in: "a", bad: true},
	} {
		got, err := parseWeights(c.in)
		if (err != nil) != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("parseWeights(%q) = %v, %v; want %v (error %t)", c.in, got, err, c.want, c.bad)
		}
	}
}

// TestBenchRainFlags checks that bad flags are refused before anything is opened or sent.
func TestBenchRainFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-weights", "1,x"}, "-weights"},
		{[]string{"-amount", "abc"}, "-amount"},
		{[]string{"-max", "1.234"}, "-max"},
		{[]string{"-budget", "-"}, "-budget"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		err := benchCmd(context.Background(), append([]string{"rain"}, c.args...), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench rain %v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
