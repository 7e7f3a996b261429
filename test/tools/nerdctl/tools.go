//go:build tools

// Package tools pins nerdctl, which the end-to-end tests drive exactly as users type it
// (`nerdctl --snapshotter nydus run ...`). scripts/build-nerdctl.sh builds its cmd/nerdctl from this
// module's go.mod and go.sum; nothing here is ours but the pin.
package tools

import _ "github.com/containerd/nerdctl/v2/cmd/nerdctl"
