package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pgqrs/pgqrs-go/ui"
)

// uiCommand is "pgqrs ui": the dashboard of the ui package on a local port.
func uiCommand(c *cli, fs *flag.FlagSet) runFunc {
	addr := fs.String("addr", "127.0.0.1:8080", "`HOST:PORT` to listen on (loopback unless --allow-remote)")
	allowActions := fs.Bool("allow-actions", false, "enable actions (pause, replay, purge, cancel, stop, retry, run now); default read-only")
	allowRemote := fs.Bool("allow-remote", false, "allow an address other than loopback (the dashboard has no login of its own)")
	prefix := fs.String("prefix", "", "serve under this path `PREFIX`, such as /pgqrs")
	refresh := fs.Duration("refresh", 2*time.Second, "how often the pages update themselves (0: never)")
	return func(ctx context.Context, _ []string) error {
		if !isLoopback(*addr) && !*allowRemote {
			return usagef("ui: %q is not a loopback address: the dashboard has no login, so serving it to the network needs --allow-remote (put it behind your own authentication)", *addr)
		}
		if *refresh < 0 {
			return usagef("ui: --refresh must not be negative")
		}
		if *prefix != "" && !strings.HasPrefix(*prefix, "/") {
			return usagef("ui: --prefix must start with /")
		}
		s, err := c.open(ctx)
		if err != nil {
			return err
		}
		if err := s.Admin().Verify(ctx); err != nil {
			return err
		}
		opts := ui.Options{Prefix: strings.TrimRight(*prefix, "/"), AllowActions: *allowActions, Refresh: *refresh}
		if *refresh == 0 {
			opts.Refresh = -1
		}
		h := ui.Handler(s, opts)
		mux := http.NewServeMux()
		if opts.Prefix != "" {
			mux.Handle(opts.Prefix+"/", h)
			mux.Handle(opts.Prefix, h)
		} else {
			mux.Handle("/", h)
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("ui: %w", err)
		}
		if !isLoopback(*addr) {
			fmt.Fprintf(c.stderr, "pgqrs: WARNING: serving the dashboard on %s, beyond this machine, with no authentication%s\n",
				ln.Addr(), map[bool]string{true: ", and actions ENABLED", false: " (read-only)"}[*allowActions])
		}
		mode := "read-only"
		if *allowActions {
			mode = "actions enabled"
		}
		fmt.Fprintf(c.stdout, "pgqrs ui: http://%s%s/ (%s, %s); Ctrl-C stops\n", ln.Addr(), opts.Prefix, s.Dialect(), mode)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		select {
		case err := <-done:
			return fmt.Errorf("ui: %w", err)
		case <-ctx.Done():
		case <-c.interrupted:
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("ui: %w", err)
		}
		return nil
	}
}

// isLoopback reports whether addr's host is a loopback address or
// "localhost"; an empty host (all interfaces) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
