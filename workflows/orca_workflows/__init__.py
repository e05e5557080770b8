"""The Argo side: Hera templates, rendering to YAML, and a local runner for that YAML."""
