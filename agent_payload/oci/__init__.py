"""OCI images on the host: references, platforms and the registry client (stdlib only)."""
