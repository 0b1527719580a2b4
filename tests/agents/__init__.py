"""Test-only hosting of the real agents, for the proof suite (tests/proof)."""
