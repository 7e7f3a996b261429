// Command containerd-nydus-grpc (peer build): the real nydus-snapshotter, built from its published
// Go module (github.com/containerd/nydus-snapshotter) behind a small main of our own, because the
// module's own cmd cannot be `go install`ed (its go.mod carries exclude directives). A peer for
// interop tests only: it shows that nydus-snapshotter drives our nydusd (`nydusd_path`) through
// the daemon's command line and HTTP API exactly as it drives upstream's. Never a runtime part.
//
//	containerd-nydus-grpc --config config.toml [--log-level debug]
//
// Everything else (root, address, daemon mode, nydusd path and config, recover policy) comes from
// nydus-snapshotter's own config.toml, filled up with its own defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"github.com/containerd/nydus-snapshotter/config"
	"github.com/containerd/nydus-snapshotter/snapshot"
	"google.golang.org/grpc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-nydus-grpc: %v\n", err)
		os.Exit(1)
	}
}

// loadConfig reads the TOML file and completes it the way nydus-snapshotter's own main does:
// its defaults under the file's values, then its validation and derived settings.
func loadConfig(path string) (*config.SnapshotterConfig, error) {
	cfg, err := config.LoadSnapshotterConfig(path)
	if err != nil {
		return nil, err
	}
	var defaults config.SnapshotterConfig
	if err := defaults.FillUpWithDefaults(); err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	if err := config.MergeConfig(cfg, &defaults); err != nil {
		return nil, fmt.Errorf("merging defaults: %w", err)
	}
	if err := config.ValidateConfig(cfg); err != nil {
		return nil, fmt.Errorf("validating: %w", err)
	}
	config.PrepareLogDir(cfg)
	if err := config.ProcessConfigurations(cfg); err != nil {
		return nil, fmt.Errorf("processing: %w", err)
	}
	if err := config.SetUpEnvironment(cfg); err != nil {
		return nil, fmt.Errorf("setting up: %w", err)
	}
	return cfg, nil
}

func run() error {
	configPath := flag.String("config", "", "nydus-snapshotter config.toml (required)")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	flag.Parse()
	if *configPath == "" {
		flag.Usage()
		return fmt.Errorf("--config is required")
	}
	if err := log.SetLevel(*logLevel); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return fmt.Errorf("config %s: %w", *configPath, err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	sn, err := snapshot.NewSnapshotter(ctx, cfg)
	if err != nil {
		return fmt.Errorf("starting the snapshotter: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(cfg.Address), 0o700); err != nil {
		return err
	}
	// A socket left by a previous run would make Listen fail; anything else at that path is an error.
	if fi, err := os.Stat(cfg.Address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket", cfg.Address)
		}
		if err := os.Remove(cfg.Address); err != nil {
			return err
		}
	}
	listener, err := net.Listen("unix", cfg.Address)
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(server, snapshotservice.FromSnapshotter(sn))
	go func() {
		<-ctx.Done()
		log.L.Info("shutting down")
		if err := sn.Close(); err != nil {
			log.L.WithError(err).Error("closing the snapshotter")
		}
		server.Stop()
	}()
	log.L.Infof("nydus-snapshotter serving on %s (daemon mode %s, fs driver %s)", cfg.Address, cfg.DaemonMode, config.GetFsDriver())
	return server.Serve(listener)
}
