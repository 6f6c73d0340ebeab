"""Policy packs shipped with trustai (YAML files in this package)."""
