package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const dlqUsage = `usage: bigmarket dlq list [-stream S] [-since 24h|RFC3339] [-json] [-url U]
       bigmarket dlq replay (<seq> | -all [-stream S]) [-url U]`

// deadLetter is a dead letter as GET /api/v1/admin/dlq answers it.
type deadLetter struct {
	Seq     uint64   `json:"seq"`
	Stream  string   `json:"stream"`
	Subject string   `json:"subject"`
	MsgID   string   `json:"msgId"`
	Reasons []string `json:"reasons"`
	DeadAt  int64    `json:"deadAt"` // Unix milliseconds
}

// dlqCmd runs "bigmarket dlq list" and "bigmarket dlq replay" through the server's admin
// endpoints, with the configured admin token.
func dlqCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, dlqUsage)
		return errors.New(`dlq: the subcommands are "list" and "replay"`)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := adminFlags(fs, "dlq "+sub)
	stream := fs.String("stream", "", "only the dead letters of this event stream (default: every stream)")
	if sub == "list" {
		since := fs.String("since", "", "only those dead-lettered in this last duration (24h) or since this RFC 3339 time")
		asJSON := fs.Bool("json", false, "print the dead letters as a JSON array")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("dlq list: unexpected arguments %q", fs.Args())
		}
		client, err := load()
		if err != nil {
			return err
		}
		return dlqList(ctx, client, *stream, *since, *asJSON, stdout)
	}
	all := fs.Bool("all", false, "replay every dead letter (of -stream)")
	// The sequence may come before the flags: "dlq replay 12 -url …".
	var seqArg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		seqArg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if seqArg == "" && fs.NArg() == 1 {
		seqArg = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("dlq replay: unexpected arguments %q", fs.Args())
	}
	var body []byte
	switch {
	case *all && seqArg != "":
		return errors.New("dlq replay: name either a sequence or -all")
	case *all:
		body, _ = json.Marshal(map[string]any{"all": true, "stream": *stream})
	case *stream != "":
		return errors.New("dlq replay: -stream goes with -all")
	default:
		seq, err := strconv.ParseUint(seqArg, 10, 64)
		if err != nil || seq == 0 {
			fmt.Fprintln(stderr, dlqUsage)
			return errors.New("dlq replay: want the dead letter's sequence (a positive integer) or -all")
		}
		body, _ = json.Marshal(map[string]uint64{"seq": seq})
	}
	client, err := load()
	if err != nil {
		return err
	}
	var replayed []deadLetter
	if err := client.call(ctx, http.MethodPost, "/api/v1/admin/dlq/replay", body, &replayed); err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}
	for _, dl := range replayed {
		fmt.Fprintf(stdout, "replayed dead letter %d (message %s) to %s\n", dl.Seq, dl.MsgID, dl.Subject)
	}
	fmt.Fprintf(stdout, "%d replayed\n", len(replayed))
	return nil
}

// dlqList prints the dead letters as a table, or as JSON.
func dlqList(ctx context.Context, client adminClient, stream, since string, asJSON bool, stdout io.Writer) error {
	q := url.Values{}
	if stream != "" {
		q.Set("stream", stream)
	}
	if since != "" {
		q.Set("since", since)
	}
	path := "/api/v1/admin/dlq"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var dls []deadLetter
	if err := client.call(ctx, http.MethodGet, path, nil, &dls); err != nil {
		return fmt.Errorf("dlq list: %w", err)
	}
	if asJSON {
		if dls == nil {
			dls = []deadLetter{}
		}
		out, _ := json.MarshalIndent(dls, "", "  ")
		_, err := fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tSTREAM\tSUBJECT\tMSG ID\tREASONS")
	for _, dl := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", dl.Seq, time.UnixMilli(dl.DeadAt).UTC().Format(time.RFC3339),
			dl.Stream, dl.Subject, dl.MsgID, strings.Join(dl.Reasons, " | "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "%d dead letters\n", len(dls))
	return err
}
