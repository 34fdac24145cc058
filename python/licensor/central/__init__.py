"""License Central: the vendor's side of licensor (products, policies, licenses, keys, tokens, events)."""
