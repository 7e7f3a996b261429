// Command containerd-stargz-grpc is our own small front end for the stargz snapshotter library
// (github.com/containerd/stargz-snapshotter/service), built only as a benchmark peer: Debian ships
// ctr-remote but no stargz snapshotter daemon, and the upstream cmd module cannot be installed by
// name (it carries replace directives). The library does all the work (remote-snapshot labels,
// FUSE mounts per layer, fetching); this file parses flags and a config file, serves the
// snapshotter on a unix socket as containerd's Snapshots gRPC API and shuts down cleanly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	golog "log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/containerd/stargz-snapshotter/service/resolver"
	toml "github.com/pelletier/go-toml"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

const (
	defaultAddress = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"
	defaultRoot    = "/var/lib/containerd-stargz-grpc"
)

// hostList collects --plain-http values: the flag may be repeated and each value may be a
// comma-separated list.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*h = append(*h, s)
		}
	}
	return nil
}

type options struct {
	address           string
	root              string
	logLevel          string
	configPath        string
	noPrefetch        bool
	noBackgroundFetch bool
	plainHTTP         hostList
}

func parseFlags(args []string) (*options, *flag.FlagSet, error) {
	o := &options{}
	fs := flag.NewFlagSet("containerd-stargz-grpc", flag.ContinueOnError)
	fs.StringVar(&o.address, "address", defaultAddress, "unix socket the Snapshots gRPC API is served on")
	fs.StringVar(&o.root, "root", defaultRoot, "state directory (snapshots, FUSE mountpoints, caches)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.configPath, "config", "", "TOML file in the format of the stargz snapshotter's config.toml (optional)")
	fs.BoolVar(&o.noPrefetch, "no-prefetch", false, "disable prefetching (overrides noprefetch in --config)")
	fs.BoolVar(&o.noBackgroundFetch, "no-background-fetch", false, "disable fetching whole layers in the background (overrides no_background_fetch in --config)")
	fs.Var(&o.plainHTTP, "plain-http", "HOST[:PORT] reached over plain http (adds an insecure resolver mirror for it); repeatable or comma-separated")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: containerd-stargz-grpc [flags]\n\nServes the stargz snapshotter (eStargz lazy pulling) as a containerd proxy snapshotter.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(os.Stdout) // asked-for help goes to stdout; usage after a bad flag stays on stderr
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, fs, nil
}

// loadConfig decodes the config file with go-toml v1, as the upstream daemon does: its
// `default:"..."` struct tags (e.g. directory_cache.direct = true) apply to keys the file leaves
// out. Without a file an empty document is decoded, so the same defaults apply.
func loadConfig(path string) (*service.Config, error) {
	text := []byte{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		text = b
	}
	tree, err := toml.LoadBytes(text)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	cfg := &service.Config{}
	if err := tree.Unmarshal(cfg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return cfg, nil
}

// addPlainHTTPMirrors makes each host reachable over http: the resolver tries a host's mirrors
// first, then the host itself over https (http only for localhost names), so an insecure mirror
// that is the host itself turns the registry into a plain-http one.
func addPlainHTTPMirrors(cfg *service.Config, hosts []string) {
	if len(hosts) == 0 {
		return
	}
	if cfg.ResolverConfig.Host == nil {
		cfg.ResolverConfig.Host = map[string]resolver.HostConfig{}
	}
	for _, h := range hosts {
		hc := cfg.ResolverConfig.Host[h]
		already := false
		for i, m := range hc.Mirrors {
			if m.Host == h {
				hc.Mirrors[i].Insecure = true
				already = true
			}
		}
		if !already {
			hc.Mirrors = append([]resolver.MirrorConfig{{Host: h, Insecure: true}}, hc.Mirrors...)
		}
		cfg.ResolverConfig.Host[h] = hc
	}
}

// describeMirrors renders the resolver mirrors as "HOST -> scheme://MIRROR" for the start log.
func describeMirrors(cfg *service.Config) []string {
	out := []string{}
	for host, hc := range cfg.ResolverConfig.Host {
		for _, m := range hc.Mirrors {
			scheme := "https"
			if m.Insecure {
				scheme = "http"
			}
			out = append(out, fmt.Sprintf("%s -> %s://%s", host, scheme, m.Host))
		}
	}
	sort.Strings(out)
	return out
}

// listenUnix removes a stale socket file and listens with mode 0600 (umask applied while the
// socket is created, so it is never reachable with wider permissions).
func listenUnix(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// fuseMountsUnder lists mountpoints of FUSE filesystems below root (for the shutdown log).
func fuseMountsUnder(root string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	prefix := strings.TrimSuffix(root, "/") + "/"
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		if strings.HasPrefix(f[4], prefix) && strings.HasPrefix(f[sep+1], "fuse") {
			found = append(found, f[4])
		}
	}
	sort.Strings(found)
	return found
}

func main() {
	o, _, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-stargz-grpc:", err)
		os.Exit(2)
	}
	os.Exit(run(o))
}

func run(o *options) int {
	if err := log.SetLevel(o.logLevel); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: --log-level: %v\n", err)
		return 2
	}
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: log.RFC3339NanoFixed, DisableHTMLEscape: true})
	ctx := log.WithLogger(context.Background(), log.L.WithField("component", "containerd-stargz-grpc"))
	// go-fuse logs through the standard library logger: route it into ours at debug level.
	golog.SetFlags(0)
	golog.SetOutput(log.L.WriterLevel(logrus.DebugLevel))

	root, err := filepath.Abs(o.root)
	if err != nil {
		log.G(ctx).WithError(err).Error("bad --root")
		return 1
	}
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		log.G(ctx).WithError(err).Error("failed to load config")
		return 1
	}
	if o.noPrefetch {
		cfg.NoPrefetch = true
	}
	if o.noBackgroundFetch {
		cfg.NoBackgroundFetch = true
	}
	addPlainHTTPMirrors(cfg, o.plainHTTP)

	if err := os.MkdirAll(root, 0o700); err != nil {
		log.G(ctx).WithError(err).Error("failed to create root")
		return 1
	}
	if err := service.Supported(root); err != nil {
		log.G(ctx).WithError(err).Error("the stargz snapshotter is not supported here (it needs overlayfs)")
		return 1
	}
	sn, err := service.NewStargzSnapshotterService(ctx, root, cfg)
	if err != nil {
		log.G(ctx).WithError(err).Error("failed to create the stargz snapshotter")
		return 1
	}
	closeSnapshotter := func() {
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("closing the snapshotter")
		}
		if left := fuseMountsUnder(root); len(left) > 0 {
			log.G(ctx).WithField("mounts", left).Warn("FUSE mounts left under root after close")
		}
	}

	l, err := listenUnix(o.address)
	if err != nil {
		log.G(ctx).WithError(err).WithField("address", o.address).Error("failed to listen")
		closeSnapshotter()
		return 1
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(l) }()
	log.G(ctx).WithFields(log.Fields{
		"address":             o.address,
		"root":                root,
		"config":              o.configPath,
		"noprefetch":          cfg.NoPrefetch,
		"no_background_fetch": cfg.NoBackgroundFetch,
		"plain_http":          []string(o.plainHTTP),
		"mirrors":             describeMirrors(cfg),
	}).Info("stargz snapshotter serving")

	code := 0
	select {
	case s := <-sigCh:
		log.G(ctx).WithField("signal", s.String()).Info("shutting down")
		// Finish in-flight calls for a moment, then cut the rest.
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
	case err := <-errCh:
		log.G(ctx).WithError(err).Error("gRPC server failed")
		code = 1
	}
	// Close unmounts every FUSE mount (layers of committed snapshots included) and closes the
	// metadata store.
	closeSnapshotter()
	_ = os.Remove(o.address)
	log.G(ctx).Info("exited")
	return code
}
