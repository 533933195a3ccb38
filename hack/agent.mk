# hack/agent.mk: the agent protocol's code generation and the guest agent
# binary, included by the top-level Makefile.
#
#   make agent-generate     regenerate shared/agentapi/*.pb.go (Debian's protoc
#                           from protobuf-compiler + the plugins below)
#   make agent-gen-check    fail if the committed generated code is stale
#   make bin/magnetar-agent the static guest agent (CGO off), PID 1 of the VM
#
# The plugins are built from the module versions pinned in go.mod
# (google.golang.org/protobuf for protoc-gen-go, github.com/containerd/ttrpc
# for protoc-gen-go-ttrpc) into _output/tools/agentapi/<versions>/, so the
# output is reproducible byte for byte; shared/agentapi's TestGeneratedCodeIsCurrent
# does the same in a temporary directory and diffs.
.PHONY: agent-generate agent-gen-check agent-gen-tools generate bin/magnetar-agent

AGENTAPI_DIR := shared/agentapi
# the versions go.mod pins (read without running go: this runs on every make)
AGENT_PB_VER := $(shell awk '$$1 == "google.golang.org/protobuf" {print $$2}' go.mod)
AGENT_TTRPC_VER := $(shell awk '$$1 == "github.com/containerd/ttrpc" {print $$2}' go.mod)
AGENT_TOOLS := _output/tools/agentapi/protobuf-$(AGENT_PB_VER)_ttrpc-$(AGENT_TTRPC_VER)

build: bin/magnetar-agent

bin/magnetar-agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS) -X github.com/magnetar-runtime/magnetar/agent/internal/service.AgentVersion=$(VERSION)" -o $@ ./agent

agent-gen-tools: $(AGENT_TOOLS)/protoc-gen-go $(AGENT_TOOLS)/protoc-gen-go-ttrpc

$(AGENT_TOOLS)/protoc-gen-go:
	@mkdir -p $(AGENT_TOOLS)
	$(GO) build -trimpath -o $@ google.golang.org/protobuf/cmd/protoc-gen-go

$(AGENT_TOOLS)/protoc-gen-go-ttrpc:
	@mkdir -p $(AGENT_TOOLS)
	$(GO) build -trimpath -o $@ github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc

generate: agent-generate

agent-generate: agent-gen-tools
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	cd $(AGENTAPI_DIR) && protoc -I . -I /usr/include \
	  --plugin=protoc-gen-go=$(CURDIR)/$(AGENT_TOOLS)/protoc-gen-go \
	  --plugin=protoc-gen-go-ttrpc=$(CURDIR)/$(AGENT_TOOLS)/protoc-gen-go-ttrpc \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative \
	  agent.proto

agent-gen-check: agent-gen-tools
	$(GO) test -count=1 -run TestGeneratedCodeIsCurrent -v ./$(AGENTAPI_DIR)
