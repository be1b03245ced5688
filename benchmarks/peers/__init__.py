"""Published models that aetk's benchmarks compare against, rebuilt from their papers."""
