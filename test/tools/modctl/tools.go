//go:build tools

// Package tools pins modctl, the ModelPack CLI the model tests and bench/model use to build and push
// model artifacts exactly as users do (`modctl build`, `modctl push`). scripts/build-peers.sh builds
// it from this module's go.mod and go.sum; nothing here is ours but the pin.
package tools

import _ "github.com/modelpack/modctl"
