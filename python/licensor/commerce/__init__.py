"""Commerce: orders from shops turned into licenses (issue 16; the order route and sources are not built yet)."""
