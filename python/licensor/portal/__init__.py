"""The License Portal (``/portal/{tenant}/``): where a tenant's customers see their licenses and manage their
devices, credential files, seats, offline activations and downloads. See ``docs/portal.md``."""
