"""asv benchmarks of fastloss (``asv run``); stand-alone measurement scripts are in
``benchmarks/scripts/``."""
