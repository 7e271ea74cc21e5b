"""One module per code location, each exposing ``defs`` (see workspace.yaml)."""
